#!/usr/bin/env bash
# GPU benchmarks in one command, in two parts (PART: resnet, lite0, or all, the default). NOT RUN
# YET: no accelerator was lent to the sessions that wrote it (see BENCHMARKS.md, section 6).
#   resnet  ResNet-18, sized for about 13.5 minutes of one H100/H200;
#   lite0   EfficientNet-Lite0, sized for about 8 minutes.
# One part fits a 15-minute lease; `all` does not.
#
# Needs, on the GPU machine: this package installed (`pip install -e .`), jax with CUDA, and for
# the PyTorch peers a CUDA build of torch (the peers are skipped by score.py and train_step.py
# with --no-torch; meta_step.py's interleaved rounds, efficientnet.py and commands.py need
# torch). Writes bench/results/gpu_*.json and gpu_machine.txt; prints every table.
#
#   PYTHON=/path/to/venv/bin/python bench/gpu.sh [resnet|lite0|all]
#
# Measures, ours and the peer alternating in one process (median ratio and its range):
# resnet:
#   - scoring images/s at 224 px, batch 1/32/128, float32 and bfloat16 (torch NCHW and
#     channels_last, bf16 under autocast);
#   - a fine-tuning step at 224 px, batch 16 (torch NCHW and channels_last);
#   - second-order meta-steps at 224 px, full width, 2 and 8 tasks, task_map vmap vs map vs
#     unroll, float32 and bfloat16: tasks/s, XLA's buffer plan and torch's peak GPU memory;
#   - first-order (fomaml, reptile) at 8 tasks.
# lite0 (the rows of `bench/run_all.sh lite0`, on the GPU; no per-layer profile, whose rule is
# the CPU's):
#   - bench/efficientnet.py: scoring at batch 1, 32 and 128 (at 128 also BatchNorm not folded
#     and bf16), the fine-tuning step at batch 16, the transfer recipe's meta-step, each with
#     first calls cold / warm and peak RSS; scoring by call size; the head's Adam update;
#   - bench/commands.py: metaiqa-score on 600 files against the torch + PIL loop on the GPU
#     (JAX_PLATFORMS=cuda), 2 rounds, and metaiqa-adapt.
# Each part has its own time limit so that one slow part cannot eat the others' budget.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PART=${1:-all}
case "$PART" in resnet|lite0|all) ;; *) echo "usage: $0 [resnet|lite0|all]" >&2; exit 2;; esac
OUT=bench/results
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and torch share the GPU.
mkdir -p "$OUT"
"$PY" -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())" \
  || { echo 'jax sees no GPU: install jax[cuda12] (or cuda13) first' >&2; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; uptime; } \
  | tee "$OUT/gpu_machine.txt"
if [[ $PART != lite0 ]]; then
  timeout 150 "$PY" bench/score.py --batches 1 32 128 --dtypes float32 bfloat16 --conv-impls '' \
    --rounds 3 --repeats 20 --out "$OUT/gpu_score.json"
  timeout 90 "$PY" bench/train_step.py --batch 16 --rounds 3 --repeats 10 \
    --out "$OUT/gpu_train_step.json"
  timeout 420 "$PY" bench/meta_step.py --widths 1 --sizes 224 --tasks 2 8 --steps 1 \
    --algorithms maml --task-maps vmap map unroll --dtypes float32 bfloat16 --rounds 3 \
    --repeats 5 --out "$OUT/gpu_meta_step.json"
  timeout 150 "$PY" bench/meta_step.py --widths 1 --sizes 224 --tasks 8 --steps 1 \
    --algorithms fomaml reptile --rounds 3 --repeats 5 --append --out "$OUT/gpu_meta_step.json"
fi
if [[ $PART != resnet ]]; then
  timeout 330 "$PY" bench/efficientnet.py --batches 1 32 128 --rounds 3 --repeats 10 \
    --variants unfolded bfloat16 --call-sizes 8 128 288 --adam --out "$OUT/gpu_efficientnet.json"
  JAX_PLATFORMS=cuda timeout 120 "$PY" bench/commands.py --commands score --rounds 2 \
    --out "$OUT/gpu_commands.json"
  JAX_PLATFORMS=cuda timeout 60 "$PY" bench/commands.py --commands adapt --rounds 1 --append \
    --out "$OUT/gpu_commands.json"
fi

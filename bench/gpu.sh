#!/usr/bin/env bash
# GPU benchmarks in one command, sized for 15 minutes of one H100/H200. NOT RUN YET: no
# accelerator was lent to the session that wrote it (see BENCHMARKS.md).
#
# Needs, on the GPU machine: this package installed (`pip install -e .`), jax with CUDA, and for
# the PyTorch peers a CUDA build of torch (peers are skipped when torch is missing or sees no
# GPU). Writes bench/results/gpu_*.json and gpu_machine.txt; prints every table.
#
#   PYTHON=/path/to/venv/bin/python bench/gpu.sh
#
# Measures: scoring images/s at 224 px, batch 1/32/128, float32 and bfloat16, JAX vs torch
# (NCHW and channels_last); second-order meta-step tasks/s JAX vs torch at 224 px, full width,
# and our scaling with the task count (2 and 8 tasks) under task_map vmap vs unroll; first-order
# (fomaml, reptile) tasks/s. Each part has its own time limit so one slow part cannot eat the
# others' budget.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=bench/results
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and torch share the GPU in bench/score.py.
mkdir -p "$OUT"
"$PY" -c "import jax; assert jax.default_backend() == 'gpu', jax.devices(); print(jax.devices())" \
  || { echo 'jax sees no GPU: install jax[cuda12] (or cuda13) first' >&2; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; uptime; } \
  | tee "$OUT/gpu_machine.txt"
timeout 200 "$PY" bench/score.py --batches 1 32 128 --dtypes float32 bfloat16 --conv-impls xla \
  --repeats 20 --out "$OUT/gpu_score.json"
timeout 420 "$PY" bench/meta_step.py --widths 1 --sizes 224 --tasks 2 8 --steps 1 \
  --algorithms maml --task-maps vmap unroll --repeats 5 --out "$OUT/gpu_meta_step.json"
timeout 200 "$PY" bench/meta_step.py --widths 1 --sizes 224 --tasks 8 --steps 1 \
  --algorithms fomaml reptile --repeats 5 --append --out "$OUT/gpu_meta_step.json"

#!/usr/bin/env bash
# Every CPU benchmark behind BENCHMARKS.md's tables but the 224 px per-layer profile, in one
# command: 17 min 18 s with that profile on the project's 2-core machine (load ~1.8), about
# 14 minutes without it. PYTHON: a venv with jax, torch==2.13.0 (CPU) and this package,
# e.g. /work/benchvenv/bin/python. Results: bench/results/{score,train_step,meta_step_224px,
# meta_step,convs,compile,remat}.json; BENCHMARKS.md's tables: `python bench/tables.py`.
# Speed ratios against PyTorch come from interleaved rounds (ours and the peer alternate in
# one process; median ratio and its range).
#
#   PYTHON=/work/benchvenv/bin/python bench/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
uptime
# 224 px, ResNet-18 width 1 (the paper's training and fine-tuning size), against PyTorch:
# scoring at batch 32 and 1, a fine-tuning step at batch 16, meta-steps of 2 tasks x (8+8), K=1.
"$PY" bench/score.py --batches 32 1 --rounds 3
"$PY" bench/train_step.py --batch 16 --rounds 3
"$PY" bench/meta_step.py --widths 1 --sizes 224 --steps 1 --algorithms maml fomaml reptile \
  --rounds 3 --repeats 1 --out bench/results/meta_step_224px.json
# 64 px, the same meta-steps in more rounds.
"$PY" bench/meta_step.py --widths 1 --sizes 64 --steps 1 --algorithms maml fomaml reptile \
  --rounds 5 --repeats 3
# Per-layer profile behind `resnet.choose_conv_impl`: XLA convolution vs im2col + matmul at
# 64 px, forward, first and second order, and inside a loop body. The 224 px profile is its own
# command (BENCHMARKS.md, section 2).
"$PY" bench/convs.py --size 64 --batch 8 --repeats 3 --loop
# Compile time and memory (each configuration in its own process), second order, K = 1 vs
# K = 5 with and without rematerialisation (width 0.25), and the first step at width 1.
"$PY" bench/meta_step.py --widths 1 --sizes 64 --steps 1 --algorithms maml --no-torch \
  --out bench/results/compile.json
"$PY" bench/meta_step.py --widths 0.25 --sizes 64 --steps 1 5 --algorithms maml --no-torch \
  --out bench/results/remat.json
"$PY" bench/meta_step.py --widths 0.25 --sizes 64 --steps 5 --algorithms maml --remat on \
  --no-torch --append --out bench/results/remat.json
uptime

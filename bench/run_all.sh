#!/usr/bin/env bash
# Every CPU benchmark behind BENCHMARKS.md's tables, in one command: 17.5 minutes on the
# project's 2-core machine at load ~4 with one more remat run than now, so about 15 minutes,
# less on an idle machine. PYTHON: a venv with jax, torch==2.13.0 (CPU) and this package, e.g.
# /work/benchvenv/bin/python. Results: bench/results/{convs,score,meta_step,remat}.json.
#
#   PYTHON=/work/benchvenv/bin/python bench/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
uptime
# Per-layer profile at the meta-step's shapes: XLA convolution vs im2col + matmul.
"$PY" bench/convs.py --size 64 --batch 8 --repeats 3
# Scoring images/s vs PyTorch eager (NCHW, channels_last), 224 px, batch 32 and 1.
"$PY" bench/score.py --batches 32 1 --conv-impls xla auto
# Meta-step vs the PyTorch peers, full-width ResNet-18, 64 px, 2 tasks x (8+8), K = 1:
# second order with XLA's convolutions and with the CPU default (matmul), first order default.
"$PY" bench/meta_step.py --widths 1 --sizes 64 --steps 1 --algorithms maml --conv-impls xla matmul
"$PY" bench/meta_step.py --widths 1 --sizes 64 --steps 1 --algorithms fomaml reptile --append
# Second-order memory: K = 1 vs K = 5, and K = 5 with rematerialisation (width 0.25).
"$PY" bench/meta_step.py --widths 0.25 --sizes 64 --steps 1 5 --algorithms maml --no-torch \
  --out bench/results/remat.json
"$PY" bench/meta_step.py --widths 0.25 --sizes 64 --steps 5 --algorithms maml --remat on \
  --no-torch --append --out bench/results/remat.json
uptime

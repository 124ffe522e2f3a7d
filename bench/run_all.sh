#!/usr/bin/env bash
# Every CPU benchmark behind BENCHMARKS.md's tables but the ResNet-18 224 px per-layer profile,
# in one command, in two parts (PART: resnet, lite0, or all, the default):
#   resnet  ResNet-18 (sections 1-4): about 14 minutes on the project's 2-core machine
#           (17 min 18 s measured with the 224 px profile, now its own command);
#   lite0   EfficientNet-Lite0 (sections 8-9): about 22 minutes (22 min 15 s measured on
#           2026-12-07).
# PYTHON: a venv with jax, torch==2.13.0 (CPU) and this package, e.g. /work/benchvenv/bin/python.
# Results: bench/results/{score,train_step,meta_step_224px,meta_step,convs,compile,remat}.json
# (resnet), {efficientnet,commands,convs_lite0}.json (lite0); BENCHMARKS.md's tables:
# `python bench/tables.py`. Speed ratios against PyTorch come from interleaved rounds (ours and
# the peer alternate in one process; median ratio and its range). Run it on an otherwise idle
# machine: PyTorch's OpenMP threads spin at their barriers, and on cores shared with other jobs
# the peers ran 5-10x slower (an unfair peer, whatever the interleaving).
#
#   PYTHON=/work/benchvenv/bin/python bench/run_all.sh [resnet|lite0|all]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PART=${1:-all}
case "$PART" in resnet|lite0|all) ;; *) echo "usage: $0 [resnet|lite0|all]" >&2; exit 2;; esac
uptime
if [[ $PART != lite0 ]]; then
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
fi
if [[ $PART != resnet ]]; then
# EfficientNet-Lite0 + stats head at 224 px against PyTorch (about 10 min): scoring at batch 1
# and 32 (at 32 also the options: BatchNorm not folded, XLA convolutions, bf16), a fine-tuning
# step at batch 16, the transfer recipe's meta-step, each with first calls cold / warm and peak
# RSS; scoring by call size; the head's Adam update.
"$PY" bench/efficientnet.py --rounds 3 --repeats 1 --variants unfolded xla bfloat16 \
  --call-sizes 1 4 8 32 288 --adam
# metaiqa-score on 600 files against a torch + PIL loop, 2 alternating rounds (about 5 min);
# metaiqa-adapt, k = 20, cold and warm (about 1.5 min).
"$PY" bench/commands.py --commands score --rounds 2
"$PY" bench/commands.py --commands adapt --rounds 1 --append
# Per-layer profile of Lite0's convolutions at 224 px, batch 8 (about 3 min).
"$PY" bench/convs.py --arch efficientnet_lite0 --size 224 --batch 8 --repeats 1
fi
uptime

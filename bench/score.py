"""Scoring throughput: images/s of the MetaIQA model in eval mode, JAX vs PyTorch eager.

Not a test. Ours: `jax.jit(model.apply)` on a float32 NHWC numpy batch (what
`metaiqa_jax.scoring.score` calls per batch), built for forward use (`grad_order=0`), per
convolution implementation (`--conv-impls`; '' = the backend's default) and compute dtype
(`--dtypes`; bf16 convolutions, float32 parameters and BatchNorm). Peers: the same network in
PyTorch eager (`torch.no_grad`, eval mode, as pyiqa's `metaiqa` runs it), NCHW and
channels_last, `torch.set_num_threads(os.cpu_count())`, bf16 rows under `torch.autocast`; on the
GPU when torch sees one. Also the machine's float32 peak (a 2048^3 XLA matmul, measured in the
same run) and the fraction of it the scoring reaches (FLOPs counted by XLA's `cost_analysis()`).

Ours and the peers are built in one process and timed in `--rounds` alternating rounds of
`--repeats` calls (ours, NCHW, channels_last, ours, ...), so a change in the machine's load hits
every side alike; rows give each side's median and the median and range of the per-round
ratios.

Usage (a venv with jax and torch, e.g. /work/benchvenv):
  python bench/score.py                       # 224 px, batch 1 and 32
  python bench/score.py --batches 16 --dtypes float32 bfloat16
Writes bench/results/score.json (ratio > 1: ours faster; `peer` is torch NCHW eager unless the
metric says channels_last).
"""

import argparse
import statistics

import numpy as np

import common


def jax_predict(width, size, batch, conv_impl, dtype):
  """(run, FLOPs per batch, first-call s): `run()` is one blocking jitted eval-mode forward."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax.models import create_model, init_variables
  model = create_model('resnet18', width, dtype=jnp.dtype(dtype), conv_impl=conv_impl or None,
                       grad_order=0)
  variables = init_variables(model, jax.random.key(0), size)
  x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
  predict = jax.jit(lambda variables, x: model.apply(variables, x, train=False))
  # FLOPs counted on the matmul form (exactly 2 x multiply-adds; XLA's count of its own
  # convolutions differs by a few per cent), the same count for every implementation.
  matmul_model = create_model('resnet18', width, conv_impl='matmul')
  flops = common.traced_flops(jax.jit(lambda variables, x: matmul_model.apply(
      variables, x, train=False)), variables, x)
  run = lambda: predict(variables, x).block_until_ready()
  first, _ = common.time_calls(run, 0)
  return run, flops, first


def torch_predict(width, size, batch, channels_last, dtype):
  """`run()`: one blocking PyTorch eager eval-mode forward (NCHW or channels_last; bfloat16
  under autocast), on the GPU when torch sees one."""
  import torch
  model, x = common.torch_model_and_images(width, size, batch, channels_last, train=False)

  def run():
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16,
                                         enabled=dtype == 'bfloat16'):
      model(x)
    common.torch_sync()

  run()
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
  parser.add_argument('--conv-impls', nargs='+', default=[''],
                      choices=['', 'xla', 'matmul', 'auto'])
  parser.add_argument('--dtypes', nargs='+', default=['float32'],
                      choices=['float32', 'bfloat16'])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=2, help='calls per side and round')
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--append', action='store_true')
  parser.add_argument('--out', help='default: bench/results/score.json')
  args = parser.parse_args()
  print(f'load average before: {common.load_average()}', flush=True)
  peak, peak_result = common.peak_row()
  rows = [peak_result]
  for batch in args.batches:
    shape = f'resnet18 w{args.width:g} + head, {args.size}px, batch {batch}'
    for dtype in args.dtypes:
      runs, flops, firsts = {}, {}, {}
      for conv_impl in args.conv_impls:
        runs[conv_impl], flops[conv_impl], firsts[conv_impl] = jax_predict(
            args.width, args.size, batch, conv_impl, dtype)
      if not args.no_torch:
        for peer, channels_last in common.TORCH_LAYOUTS.items():
          runs[peer] = torch_predict(args.width, args.size, batch, channels_last, dtype)
      seconds = common.interleave(runs, args.rounds, args.repeats)
      for conv_impl in args.conv_impls:
        name = f"scoring conv_impl={conv_impl or 'default'} {dtype}"
        rows += common.rows_against_torch(f'{name} images/s', batch, seconds, conv_impl, shape)
        if flops[conv_impl]:  # The peers run the same network: the same FLOPs per image.
          per_image = flops[conv_impl] / batch
          rate = lambda side: side in seconds and batch / statistics.median(seconds[side])
          ours_rate, peer_rate = rate(conv_impl), rate('torch')
          rows.append(common.row(f'{name} achieved / peak', per_image * ours_rate / peak,
                                 peer_rate and per_image * peer_rate / peak, 'fraction',
                                 f'{shape}; {per_image / 1e9:.2f} GFLOP/image (XLA count)'))
        rows.append(common.row(f'{name} first call (compile)', firsts[conv_impl], None, 's',
                               shape, higher_is_better=False))
  common.print_rows(rows)
  print(f'load average after: {common.load_average()}')
  common.write_rows('score', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

"""Scoring throughput: images/s of the MetaIQA model in eval mode, JAX vs PyTorch eager.

Not a test. Ours: `jax.jit(model.apply)` on a float32 NHWC numpy batch (what
`metaiqa_jax.scoring.score` calls per batch), per convolution implementation
(`--conv-impls`) and compute dtype (`--dtypes`; bf16 convolutions, float32 parameters and
BatchNorm). Peers: the same network in PyTorch eager (`torch.no_grad`, eval mode, as pyiqa's
`metaiqa` runs it), NCHW and channels_last, `torch.set_num_threads(os.cpu_count())`, bf16 rows
under `torch.autocast`; on the GPU when torch sees one. Also the
machine's float32 peak (a 2048^3 XLA matmul, measured in the same run) and the fraction of it the
scoring reaches (FLOPs counted by XLA's `cost_analysis()`).

Usage (a venv with jax and torch, e.g. /work/benchvenv):
  python bench/score.py                       # 224 px, batch 1 and 32
  python bench/score.py --batches 16 --dtypes float32 bfloat16
Writes bench/results/score.json (ratio > 1: ours faster; `peer` is torch NCHW eager unless the
metric says channels_last).
"""

import argparse
import os

import numpy as np

import common


def jax_predict(width, size, batch, conv_impl, dtype, repeats):
  """(images/s, FLOPs per batch, first-call s) of the jitted eval-mode forward."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax.models import create_model, init_variables
  model = create_model('resnet18', width, dtype=jnp.dtype(dtype), conv_impl=conv_impl)
  variables = init_variables(model, jax.random.key(0), size)
  x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
  predict = jax.jit(lambda variables, x: model.apply(variables, x, train=False))
  # FLOPs counted on the matmul form (exactly 2 x multiply-adds; XLA's count of its own
  # convolutions differs by a few per cent), the same count for every implementation.
  matmul_model = create_model('resnet18', width, conv_impl='matmul')
  flops = common.traced_flops(jax.jit(lambda variables, x: matmul_model.apply(
      variables, x, train=False)), variables, x)
  first, _ = common.time_calls(lambda: predict(variables, x).block_until_ready(), 0)
  seconds = common.best_of(lambda: predict(variables, x).block_until_ready(), repeats)
  return batch / seconds, flops, first


def torch_predict(width, size, batch, channels_last, dtype, repeats):
  """images/s of the PyTorch eager eval-mode forward (NCHW or channels_last; bfloat16 under
  autocast), on the GPU when torch sees one."""
  import torch
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  device = common.torch_device()
  model = common.torch_metaiqa(width).eval().to(device)
  x = torch.randn(batch, 3, size, size, device=device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)

  def run():
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16,
                                         enabled=dtype == 'bfloat16'):
      model(x)
    common.torch_sync()

  run()
  return batch / common.best_of(run, repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
  parser.add_argument('--conv-impls', nargs='+', default=['xla', 'matmul'],
                      choices=['xla', 'matmul', 'auto'])
  parser.add_argument('--dtypes', nargs='+', default=['float32'],
                      choices=['float32', 'bfloat16'])
  parser.add_argument('--repeats', type=int, default=2, help='calls per timed round (3 rounds)')
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
      peer = peer_cl = None
      if not args.no_torch:
        peer = torch_predict(args.width, args.size, batch, False, dtype, args.repeats)
        peer_cl = torch_predict(args.width, args.size, batch, True, dtype, args.repeats)
      for conv_impl in args.conv_impls:
        ours, flops, first = jax_predict(args.width, args.size, batch, conv_impl, dtype,
                                         args.repeats)
        name = f'scoring conv_impl={conv_impl} {dtype}'
        rows.append(common.row(f'{name} images/s', ours, peer, 'img/s', shape))
        rows.append(common.row(f'{name} images/s vs channels_last', ours, peer_cl, 'img/s',
                               shape))
        if flops:  # The peers run the same network: the same FLOPs per image.
          per_image = flops / batch
          rows.append(common.row(f'{name} achieved / peak', per_image * ours / peak,
                                 peer and per_image * peer / peak, 'fraction',
                                 f'{shape}; {per_image / 1e9:.2f} GFLOP/image (XLA count)'))
        rows.append(common.row(f'{name} first call (compile)', first, None, 's', shape))
        common.print_rows(rows[-4:])
  print(f'load average after: {common.load_average()}')
  common.write_rows('score', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

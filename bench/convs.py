"""Per-layer profile of ResNet-18's convolutions: XLA's convolution vs im2col + matmul.

Not a test. For every distinct convolution of ResNet-18 (width `--width`) at `--size` px and
batch `--batch`, times the forward pass and the forward + backward pass (gradients w.r.t. the
input and the kernel, as training and the meta-step need) of `metaiqa_jax.models.resnet.Conv`
with `impl='xla'` and `impl='matmul'`, and sums them weighted by how often the shape occurs in
the network. This is the evidence behind `default_conv_impl`.

Usage: python bench/convs.py [--size 224 --batch 16] [--width 1] [--append]
Writes bench/results/convs.json: `ours` = matmul seconds, `peer` = xla seconds, ratio > 1 when
matmul is faster.
"""

import argparse
import collections

import common


def resnet18_convs(size: int, width: float):
  """Counter of (in_hw, in_ch, out_ch, kernel, stride, padding) over ResNet-18's convs."""
  from metaiqa_jax.models.resnet import stage_channels
  channels = stage_channels(width)
  convs = collections.Counter({(size, 3, channels[0], 7, 2, 3): 1})
  hw, cin = size // 4, channels[0]
  for stage, cout in enumerate(channels):
    for block in range(2):
      stride = 2 if stage > 0 and block == 0 else 1
      convs[(hw, cin, cout, 3, stride, 1)] += 1
      if stride != 1 or cin != cout:
        convs[(hw, cin, cout, 1, stride, 0)] += 1
      hw = (hw + 2 - 3) // stride + 1
      convs[(hw, cout, cout, 3, 1, 1)] += 1
      cin = cout
  return convs


def time_conv(shape, batch, impl, repeats):
  """(forward s, forward+backward s) of one convolution, best of 3 means of `repeats`."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax.models.resnet import Conv
  hw, cin, cout, k, s, p = shape
  conv = Conv(cout, k, s, p, impl=impl)
  x = jax.random.normal(jax.random.key(0), (batch, hw, hw, cin), jnp.float32)
  params = conv.init(jax.random.key(1), x)
  forward = jax.jit(conv.apply)
  grads = jax.jit(jax.grad(lambda params, x: jnp.sum(jnp.square(conv.apply(params, x))),
                           argnums=(0, 1)))
  run_forward = lambda: forward(params, x).block_until_ready()
  run_grads = lambda: jax.block_until_ready(grads(params, x))
  run_forward(), run_grads()
  return common.best_of(run_forward, repeats), common.best_of(run_grads, repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--append', action='store_true')
  parser.add_argument('--out', help='default: bench/results/convs.json')
  args = parser.parse_args()
  print(f'load average before: {common.load_average()}')
  rows, totals = [], collections.defaultdict(float)
  for shape, count in sorted(resnet18_convs(args.size, args.width).items(), reverse=True):
    hw, cin, cout, k, s, _ = shape
    times = {impl: time_conv(shape, args.batch, impl, args.repeats) for impl in ('xla', 'matmul')}
    name = f'{k}x{k}/{s} {cin}->{cout} @{hw}px'
    desc = f'batch {args.batch}, occurs {count}x in resnet18 w{args.width:g} at {args.size}px'
    for i, pass_name in enumerate(('forward', 'forward+backward')):
      rows.append(common.row(f'conv {name} {pass_name}', times['matmul'][i], times['xla'][i], 's',
                             desc, higher_is_better=False))
      for impl in times:
        totals[(pass_name, impl)] += count * times[impl][i]
    common.print_rows(rows[-2:])
  for pass_name in ('forward', 'forward+backward'):
    rows.append(common.row(f'all convs {pass_name}', totals[(pass_name, 'matmul')],
                           totals[(pass_name, 'xla')], 's',
                           f'resnet18 w{args.width:g} {args.size}px batch {args.batch}',
                           higher_is_better=False))
  common.print_rows(rows[-2:])
  print(f'load average after: {common.load_average()}')
  common.write_rows('convs', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

"""Per-layer profile of ResNet-18's convolutions: XLA's convolution vs im2col + matmul.

Not a test. For every distinct convolution of ResNet-18 (width `--width`) at `--size` px and
batch `--batch`, times three uses of `metaiqa_jax.models.layers.Conv` with `impl='xla'` and
`impl='matmul'`, and sums them weighted by how often the shape occurs in the network:
* forward: scoring;
* forward+backward (first order): gradients of a loss w.r.t. the input and the kernel, as
  training, fine-tuning and first-order meta-learning need;
* second order: gradients w.r.t. the input and the kernel of the squared norm of the kernel's
  gradient, i.e. the derivative of a backward pass, as second-order MAML needs when its inner
  step adapts the convolutions.
* with `--loop`, also forward+backward inside a loop body: one gradient step on the kernel in
  a `lax.scan` of length 1, as an inner loop written as a scan would run it.
This is the evidence behind the rule of `layers.choose_conv_impl`, and (`--loop`) behind the
meta-learner's inner steps being written out rather than scanned.

Usage: python bench/convs.py [--size 224 --batch 16] [--width 1] [--loop] [--append]
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


PASSES = ('forward', 'forward+backward', 'second order')
LOOP_PASS = 'forward+backward in a loop body'


def time_conv(shape, batch, impl, repeats, loop=False):
  """Seconds of one convolution per pass of `PASSES` (+ `LOOP_PASS` if `loop`), each the best
  of 3 means of `repeats`."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax.models.layers import Conv
  hw, cin, cout, k, s, p = shape
  conv = Conv(cout, k, s, p, impl=impl)
  x = jax.random.normal(jax.random.key(0), (batch, hw, hw, cin), jnp.float32)
  params = conv.init(jax.random.key(1), x)
  forward = jax.jit(conv.apply)
  loss = lambda params, x: jnp.sum(jnp.square(conv.apply(params, x)))
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))

  def kernel_grad_norm(params, x):
    return sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(jax.grad(loss)(params, x)))

  second = jax.jit(jax.grad(kernel_grad_norm, argnums=(0, 1)))

  @jax.jit
  def looped(params, x):
    def step(params, _):
      return jax.tree.map(lambda p, g: p - 1e-3 * g, params, jax.grad(loss)(params, x)), None
    return jax.lax.scan(step, params, None, length=1)[0]

  runs = [lambda: forward(params, x).block_until_ready(),
          lambda: jax.block_until_ready(grads(params, x)),
          lambda: jax.block_until_ready(second(params, x))]
  if loop:
    runs.append(lambda: jax.block_until_ready(looped(params, x)))
  for run in runs:
    run()
  return tuple(common.best_of(run, repeats) for run in runs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--loop', action='store_true',
                      help=f'also time {LOOP_PASS!r} (slow with XLA convolutions)')
  parser.add_argument('--append', action='store_true')
  parser.add_argument('--out', help='default: bench/results/convs.json')
  args = parser.parse_args()
  print(f'load average before: {common.load_average()}')
  passes = PASSES + ((LOOP_PASS,) if args.loop else ())
  rows, totals = [], collections.defaultdict(float)
  for shape, count in sorted(resnet18_convs(args.size, args.width).items(), reverse=True):
    hw, cin, cout, k, s, _ = shape
    times = {impl: time_conv(shape, args.batch, impl, args.repeats, args.loop)
             for impl in ('xla', 'matmul')}
    name = f'{k}x{k}/{s} {cin}->{cout} @{hw}px'
    desc = f'batch {args.batch}, occurs {count}x in resnet18 w{args.width:g} at {args.size}px'
    for i, pass_name in enumerate(passes):
      rows.append(common.row(f'conv {name} {pass_name}', times['matmul'][i], times['xla'][i], 's',
                             desc, higher_is_better=False))
      for impl in times:
        totals[(pass_name, impl)] += count * times[impl][i]
    common.print_rows(rows[-len(passes):])
  for pass_name in passes:
    rows.append(common.row(f'all convs {pass_name}', totals[(pass_name, 'matmul')],
                           totals[(pass_name, 'xla')], 's',
                           f'resnet18 w{args.width:g} {args.size}px batch {args.batch}',
                           higher_is_better=False))
  common.print_rows(rows[-len(passes):])
  print(f'load average after: {common.load_average()}')
  common.write_rows('convs', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

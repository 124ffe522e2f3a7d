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

With `--arch efficientnet_lite0`, the same for every distinct convolution of EfficientNet-Lite0
(TensorFlow-SAME padding), forward and forward+backward (Lite0 is never differentiated twice
here), and three forms of each depthwise convolution: XLA's grouped convolution
(`feature_group_count`), the shifted multiply-adds of `Conv(impl='matmul')`, and an im2col
contraction (the k x k slices stacked on a new axis, then one `einsum` with the taps). Each row
also carries the layer's FLOPs and its least memory traffic (input, output and kernel once, in
float32), and the file the machine's matmul peak and memory bandwidth (`common.jax_peak_bandwidth`),
so that the tables can give each layer's physical bound (roofline: the slower of FLOPs at the
peak and bytes at the bandwidth) as a fraction of its measured time.

Usage: python bench/convs.py [--size 224 --batch 16] [--width 1] [--loop] [--append]
       python bench/convs.py --arch efficientnet_lite0 --size 224 --batch 8
Writes bench/results/convs.json (Lite0: convs_lite0.json): `ours` = matmul (or im2col) seconds,
`peer` = xla seconds, ratio > 1 when `ours` is faster.
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


LITE0_PASSES = PASSES[:2]


def lite0_convs(size: int):
  """Counter of (in_hw, in_ch, out_ch, kernel, stride, groups) over EfficientNet-Lite0's convs."""
  from metaiqa_jax.models import efficientnet
  convs = collections.Counter({(size, 3, efficientnet.STEM_CHANNELS, 3, 2, 1): 1})
  hw, cin = -(-size // 2), efficientnet.STEM_CHANNELS
  for k, s, expand, repeats, cout in efficientnet.stage_table('efficientnet_lite0'):
    for i in range(repeats):
      stride, mid = s if i == 0 else 1, cin * expand
      if expand != 1:
        convs[(hw, cin, mid, 1, 1, 1)] += 1
      convs[(hw, mid, mid, k, stride, mid)] += 1
      hw = -(-hw // stride)
      convs[(hw, mid, cout, 1, 1, 1)] += 1
      cin = cout
  convs[(hw, cin, efficientnet.HEAD_CHANNELS, 1, 1, 1)] += 1
  return convs


def depthwise_im2col(x, kernel, stride: int):
  """Depthwise convolution, TensorFlow-SAME, as one contraction: the k x k strided slices
  stacked on a new axis `(batch, out_h, out_w, k * k, C)` times the taps `(k * k, C)` of the
  kernel `(k, k, 1, C)`, summed over the taps."""
  import jax.numpy as jnp
  from metaiqa_jax.models.layers import conv_padding
  k = kernel.shape[0]
  pads = [conv_padding(x.shape[axis], k, stride, 'same') for axis in (1, 2)]
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  out_h, out_w = ((x.shape[axis] - k) // stride + 1 for axis in (1, 2))
  patches = jnp.stack([x[:, i:i + stride * (out_h - 1) + 1:stride,
                         j:j + stride * (out_w - 1) + 1:stride] for i in range(k)
                       for j in range(k)], axis=-2)
  return jnp.einsum('bhwtc,tc->bhwc', patches, kernel.reshape(k * k, -1))


def time_lite0_conv(shape, batch, form, repeats):
  """Seconds of one Lite0 convolution in `form` ('xla' | 'matmul' | 'im2col', the last for
  depthwise ones) per pass of `LITE0_PASSES`, each the best of 3 means of `repeats` (1 when a
  call takes over 0.25 s)."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax.models.layers import Conv
  hw, cin, cout, k, s, groups = shape
  conv = Conv(cout, k, s, 'same', impl='matmul' if form == 'im2col' else form, groups=groups)
  x = jax.random.normal(jax.random.key(0), (batch, hw, hw, cin), jnp.float32)
  params = conv.init(jax.random.key(1), x)
  apply = ((lambda params, x: depthwise_im2col(x, params['params']['kernel'], s))
           if form == 'im2col' else conv.apply)
  forward = jax.jit(apply)
  grads = jax.jit(jax.grad(lambda params, x: jnp.sum(jnp.square(apply(params, x))),
                           argnums=(0, 1)))
  times = []
  for run in (lambda: forward(params, x).block_until_ready(),
              lambda: jax.block_until_ready(grads(params, x))):
    run()
    first, _ = common.time_calls(run, 0)
    times.append(common.best_of(run, 1 if first > 0.25 else repeats))
  return times


def main_lite0(args):
  """The per-layer profile of EfficientNet-Lite0 (module docstring)."""
  print(f'load average before: {common.load_average()}')
  peak, peak_result = common.peak_row()
  bandwidth, bandwidth_result = common.bandwidth_row()
  rows = [peak_result, bandwidth_result]
  for shape, count in sorted(lite0_convs(args.size).items(), reverse=True):
    hw, cin, cout, k, s, groups = shape
    out = -(-hw // s)
    macs = args.batch * out * out * cout * k * k * cin // groups
    x_bytes, y_bytes, w_bytes = (4 * args.batch * hw * hw * cin, 4 * args.batch * out * out * cout,
                                 4 * k * k * cin // groups * cout)
    # Forward: read x and the kernel, write y. Forward+backward adds the input's and the kernel's
    # gradients: read dy, x and the kernel, write dx and dW (3x the multiply-adds).
    flops = (2 * macs, 6 * macs)
    traffic = (x_bytes + y_bytes + w_bytes, 3 * x_bytes + 2 * y_bytes + 3 * w_bytes)
    kind = 'dw' if groups > 1 else ''
    name = f'{kind}{k}x{k}/{s} {cin}->{cout} @{hw}px'
    desc = f'batch {args.batch}, occurs {count}x in efficientnet_lite0 at {args.size}px'
    forms = ('xla', 'matmul', 'im2col') if groups > 1 else ('xla', 'matmul')
    times = {form: time_lite0_conv(shape, args.batch, form, args.repeats) for form in forms}
    for i, pass_name in enumerate(LITE0_PASSES):
      for form in forms[1:]:
        rows.append(common.row(f'conv {name} {pass_name} {form}', times[form][i],
                               times['xla'][i], 's', desc, higher_is_better=False)
                    | {'flops': flops[i], 'bytes': traffic[i]})
    common.print_rows(rows[-len(LITE0_PASSES) * (len(forms) - 1):])
  print(f'load average after: {common.load_average()}')
  common.write_rows('convs_lite0', rows, append=args.append, out=args.out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--loop', action='store_true',
                      help=f'also time {LOOP_PASS!r} (slow with XLA convolutions)')
  parser.add_argument('--arch', default='resnet18', choices=['resnet18', 'efficientnet_lite0'])
  parser.add_argument('--append', action='store_true')
  parser.add_argument('--out', help='default: bench/results/convs.json (convs_lite0.json)')
  args = parser.parse_args()
  if args.arch == 'efficientnet_lite0':
    return main_lite0(args)
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

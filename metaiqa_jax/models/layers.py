"""Layers every backbone is built from: PyTorch-semantics BatchNorm and a convolution whose form
(XLA's convolution or an explicit im2col matmul) is chosen per layer by shape and use.

Layout is NHWC, kernels HWIO. Parameters do not depend on how a convolution is computed, so
weights load once and run in any form.
"""

import functools
from typing import Any, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Padding = Union[int, str]


class BatchNorm(nn.Module):
  """PyTorch-semantics BatchNorm over all axes but the last.

  Training normalises with the biased batch variance and updates the running variance with the
  unbiased one (`var * n / (n - 1)`), as `torch.nn.BatchNorm{1,2}d` do; Flax's `nn.BatchNorm`
  stores the biased one, which would drift from torch over many steps. There is no `axis_name`:
  statistics are per call, so vmapping tasks never mixes their statistics.

  Variables: params `scale` (C,), `bias` (C,); batch_stats `mean` (C,), `var` (C,).
  """
  momentum: float = 0.1  # PyTorch convention: weight of the new batch statistic.
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    xf = x.astype(jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axis=axes)
      var = jnp.mean(jnp.square(xf - mean), axis=axes)
      if not self.is_initializing():
        n = xf.size // features
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (xf - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
    return y.astype(self.dtype)


CONV_IMPLS = ('xla', 'matmul', 'auto')
GRAD_ORDERS = (0, 1, 2)
# 'auto' computes a convolution as a matmul when its output has at most this many pixels (and
# a strided convolution always, second-order use always; `choose_conv_impl`).
MATMUL_MAX_OUTPUT_PIXELS = 7 * 7


def choose_conv_impl(kernel: int, stride: int, output_pixels: int, grad_order: int,
                     groups: int = 1) -> str:
  """'matmul' or 'xla' for one convolution on CPU: the faster one for its shape and use.

  Args:
    kernel, stride: the convolution's.
    output_pixels: out_h * out_w.
    grad_order: how many times the convolution is differentiated where it runs: 0 scoring
      (forward only), 1 training (one backward pass), 2 a second-order meta-gradient that
      differentiates the inner step's backward pass.
    groups: 1 for a dense convolution; the channel count for a depthwise one.

  The rule for dense convolutions, from a per-layer profile of ResNet-18 on the 2-core CPU
  (`bench/convs.py`, batch 8, 64 and 224 px inputs; BENCHMARKS.md section 2): differentiated
  twice, XLA's CPU convolution is slower than the im2col matmul at every shape (2-5x from 7x7
  outputs up, 40x at 2x2), so second-order use is all matmul. For forward and first-order use
  the matmul form wins on strided convolutions other than the stem (im2col copies each input
  pixel 9/4 times for a 3x3/2, a quarter of them for a 1x1/2) and on outputs of at most 7x7
  pixels (1.35x forward and 1.8x forward + backward at 7x7, 55x at 2x2); XLA's convolution wins
  on the stride-1 convolutions of larger maps (2.8-3.6x forward at 28x28 and 56x56) and on the
  7x7 stem (im2col copies 49x the input). Summed over the network the rule is within 5%
  (64 px) and equal (224 px) to choosing the faster form layer by layer.

  Depthwise convolutions (groups > 1) are always shifted multiply-adds (the 'matmul' form of a
  depthwise kernel), and 1x1 convolutions plain matrix products: XLA's CPU grouped convolution
  ran EfficientNet-Lite0 at 5 images/s forward (224 px, batch 32), with only the depthwise ones
  as multiply-adds at 57, with every convolution in the matmul form at 98. An im2col
  contraction of a depthwise kernel (the k x k slices stacked, one einsum with the taps) was
  7-50x slower than the multiply-adds forward and 1.6-2.6x slower forward + backward on Lite0's
  56 and 112 px maps (batch 16, one-off timings); `bench/convs.py --arch efficientnet_lite0`
  times all three forms at every layer (BENCHMARKS.md, section 9).
  """
  if grad_order >= 2 or groups > 1 or kernel == 1:
    return 'matmul'
  if stride > 1 and kernel < 7:
    return 'matmul'
  return 'matmul' if output_pixels <= MATMUL_MAX_OUTPUT_PIXELS else 'xla'


def default_conv_impl(platform: str | None = None) -> str:
  """'auto' on CPU (per layer, `choose_conv_impl`), 'xla' elsewhere (GPU/TPU convolution
  libraries; not measured here)."""
  platform = jax.default_backend() if platform is None else platform
  return 'auto' if platform == 'cpu' else 'xla'


def conv_padding(size: int, kernel: int, stride: int, padding: Padding) -> tuple[int, int]:
  """(before, after) padding of one spatial axis of `size` pixels.

  An int pads both sides by it (torch's `padding=`). 'same' is TensorFlow's SAME: the output
  has ceil(size / stride) pixels and the odd pixel of padding, if any, goes after (bottom,
  right), as the EfficientNet weights were trained with.
  """
  if padding == 'same':
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
  if isinstance(padding, int) and padding >= 0:
    return padding, padding
  raise ValueError(f"padding must be a non-negative int or 'same', got {padding!r}")


class Conv(nn.Module):
  """Bias-free square 2-D convolution (NHWC, kernel HWIO), `nn.Conv`'s parameter and init.

  `groups` = 1 is a dense convolution (kernel `(k, k, C, features)`); `groups` = C =
  `features` a depthwise one (kernel `(k, k, 1, C)`, torch's `groups=C`).

  `impl` selects how it is computed, with the same result up to float32 rounding:
  * 'xla': one `lax.conv_general_dilated` (XLA's convolution, grouped for depthwise);
  * 'matmul': im2col by strided slices of the padded input. Dense: the slices concatenated on
    the channel axis (`(batch, out_h, out_w, kernel * kernel * in_channels)`) times the kernel
    reshaped to `(kernel * kernel * in_channels, features)`. Depthwise: the sum of each slice
    times its kernel tap, channel by channel. Its gradients are slices, pads and products;
  * 'auto': per convolution, `choose_conv_impl(kernel, stride, output pixels, grad_order,
    groups)`;
  * None: `default_conv_impl()` of the backend being traced for.
  `grad_order` (0, 1, 2) is how many times the convolution will be differentiated (scoring,
  training, second-order meta-gradient); only 'auto' reads it. `padding`: see `conv_padding`.

  Input `(batch, H, W, C)`; output `(batch, H', W', features)` in `dtype`, with
  `H' = (H + pad_before + pad_after - kernel) // stride + 1`.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: Padding = 0
  dtype: Dtype = jnp.float32
  impl: str | None = None
  grad_order: int = 1
  groups: int = 1

  @nn.compact
  def __call__(self, x):
    impl = default_conv_impl() if self.impl is None else self.impl
    if impl not in CONV_IMPLS:
      raise ValueError(f'conv impl must be one of {CONV_IMPLS} or None; got {impl!r}')
    if self.grad_order not in GRAD_ORDERS:
      raise ValueError(f'grad_order must be one of {GRAD_ORDERS}; got {self.grad_order!r}')
    channels = x.shape[-1]
    if self.groups not in (1, channels) or (self.groups > 1 and self.features != channels):
      raise ValueError(f'groups must be 1 or, for a depthwise convolution, the channel count '
                       f'{channels} = features; got groups={self.groups}, '
                       f'features={self.features}')
    k, s = self.kernel, self.stride
    kernel = self.param('kernel', nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                        (k, k, channels // self.groups, self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    pad_h = conv_padding(x.shape[1], k, s, self.padding)
    pad_w = conv_padding(x.shape[2], k, s, self.padding)
    out_h = (x.shape[1] + sum(pad_h) - k) // s + 1
    out_w = (x.shape[2] + sum(pad_w) - k) // s + 1
    if impl == 'auto':
      impl = choose_conv_impl(k, s, out_h * out_w, self.grad_order, self.groups)
    if impl == 'xla':
      return jax.lax.conv_general_dilated(x, kernel, (s, s), (pad_h, pad_w),
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                          feature_group_count=self.groups)
    if any(pad_h + pad_w):
      x = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    patches = [x[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :]
               for i in range(k) for j in range(k)]
    if self.groups > 1:
      taps = kernel.reshape(k * k, self.features)
      return functools.reduce(jnp.add, [patch * taps[t] for t, patch in enumerate(patches)])
    patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    return jnp.dot(patches, kernel.reshape(-1, self.features))

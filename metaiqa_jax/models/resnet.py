"""torchvision-exact ResNet-18/34/50 in Flax Linen.

Layout is NHWC (inputs `(batch, height, width, 3)`). Padding, pooling, strides and BatchNorm
(eps 1e-5, PyTorch momentum 0.1 == running = 0.9 * running + 0.1 * batch) match
`torchvision.models.resnet` exactly, so torchvision, MetaIQA and pyiqa weights load without
approximation: stem 7x7/2 conv with padding 3, 3x3/2 max-pool with padding 1, 3x3 convs with
padding 1 (the stride sits on the 3x3 conv in bottlenecks, torchvision's "ResNet v1.5"), 1x1/s
projection shortcuts, global average pool, `fc` to `num_classes` logits.

Submodule names follow torchvision with `.` replaced by `_` (`layer2_0/downsample_conv`), so the
weight mapping in `metaiqa_jax.weights` is a rename plus a transpose.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

STAGE_SIZES = {
    'resnet18': (2, 2, 2, 2),
    'resnet34': (3, 4, 6, 3),
    'resnet50': (3, 4, 6, 3),
}
BASE_CHANNELS = (64, 128, 256, 512)


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


def choose_conv_impl(kernel: int, stride: int, output_pixels: int, grad_order: int) -> str:
  """'matmul' or 'xla' for one convolution on CPU: the faster one for its shape and use.

  Args:
    kernel, stride: the convolution's.
    output_pixels: out_h * out_w.
    grad_order: how many times the convolution is differentiated where it runs: 0 scoring
      (forward only), 1 training (one backward pass), 2 a second-order meta-gradient that
      differentiates the inner step's backward pass.

  The rule, from a per-layer profile of ResNet-18 on the 2-core CPU (`bench/convs.py`, batch 8,
  64 and 224 px inputs; BENCHMARKS.md section 2): differentiated twice, XLA's CPU convolution is
  slower than the im2col matmul at every shape (2-5x from 7x7 outputs up, 40x at 2x2), so
  second-order use is all matmul. For forward and first-order use the matmul form wins on
  strided convolutions other than the stem (im2col copies each input pixel 9/4 times for a
  3x3/2, a quarter of them for a 1x1/2) and on outputs of at most 7x7 pixels (1.35x forward and
  1.8x forward + backward at 7x7, 55x at 2x2); XLA's convolution wins on the stride-1
  convolutions of larger maps (2.8-3.6x forward at 28x28 and 56x56) and on the 7x7 stem
  (im2col copies 49x the input). Summed over the network the rule is within 5% (64 px) and
  equal (224 px) to choosing the faster form layer by layer.
  """
  if grad_order >= 2:
    return 'matmul'
  if stride > 1 and kernel < 7:
    return 'matmul'
  return 'matmul' if output_pixels <= MATMUL_MAX_OUTPUT_PIXELS else 'xla'


def default_conv_impl(platform: str | None = None) -> str:
  """'auto' on CPU (per layer, `choose_conv_impl`), 'xla' elsewhere (GPU/TPU convolution
  libraries; not measured here)."""
  platform = jax.default_backend() if platform is None else platform
  return 'auto' if platform == 'cpu' else 'xla'


class Conv(nn.Module):
  """Bias-free square 2-D convolution (NHWC, kernel HWIO), `nn.Conv`'s parameter and init.

  `impl` selects how it is computed, with the same result up to float32 rounding:
  * 'xla': one `lax.conv_general_dilated` (XLA's convolution);
  * 'matmul': im2col by strided slices of the padded input, concatenated on the channel axis
    (`(batch, out_h, out_w, kernel * kernel * in_channels)`), times the kernel reshaped to
    `(kernel * kernel * in_channels, features)`. Its gradients are slices, pads and matrix
    products;
  * 'auto': per convolution, `choose_conv_impl(kernel, stride, output pixels, grad_order)`;
  * None: `default_conv_impl()` of the backend being traced for.
  `grad_order` (0, 1, 2) is how many times the convolution will be differentiated (scoring,
  training, second-order meta-gradient); only 'auto' reads it.

  Input `(batch, H, W, C)`; output `(batch, H', W', features)` in `dtype`, with
  `H' = (H + 2 * padding - kernel) // stride + 1`.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  dtype: Dtype = jnp.float32
  impl: str | None = None
  grad_order: int = 1

  @nn.compact
  def __call__(self, x):
    impl = default_conv_impl() if self.impl is None else self.impl
    if impl not in CONV_IMPLS:
      raise ValueError(f'conv impl must be one of {CONV_IMPLS} or None; got {impl!r}')
    if self.grad_order not in GRAD_ORDERS:
      raise ValueError(f'grad_order must be one of {GRAD_ORDERS}; got {self.grad_order!r}')
    k, s, p = self.kernel, self.stride, self.padding
    kernel = self.param('kernel', nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    out_h, out_w = (x.shape[1] + 2 * p - k) // s + 1, (x.shape[2] + 2 * p - k) // s + 1
    if impl == 'auto':
      impl = choose_conv_impl(k, s, out_h * out_w, self.grad_order)
    if impl == 'xla':
      return jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)),
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    patches = [x[:, i:i + s * (out_h - 1) + 1:s, j:j + s * (out_w - 1) + 1:s, :]
               for i in range(k) for j in range(k)]
    patches = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
    return jnp.dot(patches, kernel.reshape(-1, self.features))


def max_pool_3x3_s2(x):
  """3x3 max-pool, stride 2, padding 1 (torchvision's stem pool) on `(batch, H, W, C)`.

  The maximum of the 9 strided slices of the (-inf) padded input: the same values as
  `nn.max_pool`, and a backward pass of elementwise selects, where XLA's CPU backward of
  `reduce_window` (select-and-scatter) is ~10x slower (BENCHMARKS.md, section 5). Gradients
  are the same except between exactly tied window maxima (measure zero for real-valued inputs;
  a tie of ReLU zeros carries no gradient either way).
  """
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
  out_h, out_w = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
  windows = [x[:, i:i + 2 * (out_h - 1) + 1:2, j:j + 2 * (out_w - 1) + 1:2, :]
             for i in range(3) for j in range(3)]
  return functools.reduce(jnp.maximum, windows)


def _conv(parent, features, kernel, stride, padding, name):
  """A `Conv` computed as `parent`'s dtype, conv_impl and grad_order say."""
  return Conv(features, kernel, stride, padding, parent.dtype, parent.conv_impl,
              parent.grad_order, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34). Output channels = `features`."""
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  conv_impl: str | None = None
  grad_order: int = 1
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    residual = x
    y = _conv(self, self.features, 3, self.stride, 1, 'conv1')(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(y, train))
    y = _conv(self, self.features, 3, 1, 1, 'conv2')(y)
    y = BatchNorm(dtype=self.dtype, name='bn2')(y, train)
    if residual.shape != y.shape:
      residual = _conv(self, self.features, 1, self.stride, 0, 'downsample_conv')(x)
      residual = BatchNorm(dtype=self.dtype, name='downsample_bn')(residual, train)
    return nn.relu(y + residual)


class Bottleneck(nn.Module):
  """1x1 - 3x3(stride) - 1x1 bottleneck (ResNet-50). Output channels = 4 * `features`."""
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  conv_impl: str | None = None
  grad_order: int = 1
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    residual = x
    y = _conv(self, self.features, 1, 1, 0, 'conv1')(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(y, train))
    y = _conv(self, self.features, 3, self.stride, 1, 'conv2')(y)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn2')(y, train))
    y = _conv(self, self.features * 4, 1, 1, 0, 'conv3')(y)
    y = BatchNorm(dtype=self.dtype, name='bn3')(y, train)
    if residual.shape != y.shape:
      residual = _conv(self, self.features * 4, 1, self.stride, 0, 'downsample_conv')(x)
      residual = BatchNorm(dtype=self.dtype, name='downsample_bn')(residual, train)
    return nn.relu(y + residual)


def stage_channels(width: float) -> tuple[int, ...]:
  """Channels of the four stages for a width multiplier (1.0 -> 64, 128, 256, 512)."""
  return tuple(max(1, int(round(c * width))) for c in BASE_CHANNELS)


class ResNet(nn.Module):
  """ResNet backbone + `fc`, returning `(batch, num_classes)` logits (float32).

  Attributes:
    arch: 'resnet18' | 'resnet34' | 'resnet50'.
    width: channel multiplier (1.0 is torchvision's network; 0.125 gives 8-16-32-64 channels).
    num_classes: size of `fc` (1000 for ImageNet weights, as MetaIQA keeps it).
    dtype: compute dtype of convolutions (parameters stay float32).
    conv_impl: 'xla' | 'matmul' | 'auto' | None (`Conv`; the parameters do not depend on it).
    grad_order: 0 | 1 | 2, how many times the convolutions are differentiated where the model
      runs (`Conv`; read by 'auto' only).
  """
  arch: str = 'resnet18'
  width: float = 1.0
  num_classes: int = 1000
  dtype: Dtype = jnp.float32
  conv_impl: str | None = None
  grad_order: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    if self.arch not in STAGE_SIZES:
      raise ValueError(f'unknown arch {self.arch!r}; expected one of {sorted(STAGE_SIZES)}')
    block_cls = Bottleneck if self.arch == 'resnet50' else BasicBlock
    x = x.astype(self.dtype)
    channels = stage_channels(self.width)
    x = _conv(self, channels[0], 7, 2, 3, 'conv1')(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(x, train))
    x = max_pool_3x3_s2(x)
    for stage, (blocks, features) in enumerate(zip(STAGE_SIZES[self.arch], channels)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = block_cls(features, stride, self.dtype, self.conv_impl, self.grad_order,
                      name=f'layer{stage + 1}_{block}')(x, train)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=jnp.float32, name='fc')(x)

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

import flax.linen as nn
import jax.numpy as jnp

from metaiqa_jax.models.layers import BatchNorm, Conv, Dtype

STAGE_SIZES = {
    'resnet18': (2, 2, 2, 2),
    'resnet34': (3, 4, 6, 3),
    'resnet50': (3, 4, 6, 3),
}
BASE_CHANNELS = (64, 128, 256, 512)


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

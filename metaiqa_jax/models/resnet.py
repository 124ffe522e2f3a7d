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

from typing import Any, Callable, Sequence

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


def _conv(features, kernel, stride, padding, dtype, name):
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)), use_bias=False,
                 dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                 name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34). Output channels = `features`."""
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    residual = x
    y = _conv(self.features, 3, self.stride, 1, self.dtype, 'conv1')(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(y, train))
    y = _conv(self.features, 3, 1, 1, self.dtype, 'conv2')(y)
    y = BatchNorm(dtype=self.dtype, name='bn2')(y, train)
    if residual.shape != y.shape:
      residual = _conv(self.features, 1, self.stride, 0, self.dtype, 'downsample_conv')(x)
      residual = BatchNorm(dtype=self.dtype, name='downsample_bn')(residual, train)
    return nn.relu(y + residual)


class Bottleneck(nn.Module):
  """1x1 - 3x3(stride) - 1x1 bottleneck (ResNet-50). Output channels = 4 * `features`."""
  features: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    residual = x
    y = _conv(self.features, 1, 1, 0, self.dtype, 'conv1')(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(y, train))
    y = _conv(self.features, 3, self.stride, 1, self.dtype, 'conv2')(y)
    y = nn.relu(BatchNorm(dtype=self.dtype, name='bn2')(y, train))
    y = _conv(self.features * 4, 1, 1, 0, self.dtype, 'conv3')(y)
    y = BatchNorm(dtype=self.dtype, name='bn3')(y, train)
    if residual.shape != y.shape:
      residual = _conv(self.features * 4, 1, self.stride, 0, self.dtype, 'downsample_conv')(x)
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
  """
  arch: str = 'resnet18'
  width: float = 1.0
  num_classes: int = 1000
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.arch not in STAGE_SIZES:
      raise ValueError(f'unknown arch {self.arch!r}; expected one of {sorted(STAGE_SIZES)}')
    block_cls = Bottleneck if self.arch == 'resnet50' else BasicBlock
    x = x.astype(self.dtype)
    channels = stage_channels(self.width)
    x = _conv(channels[0], 7, 2, 3, self.dtype, 'conv1')(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name='bn1')(x, train))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (blocks, features) in enumerate(zip(STAGE_SIZES[self.arch], channels)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = block_cls(features, stride, self.dtype, name=f'layer{stage + 1}_{block}')(x, train)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=jnp.float32, name='fc')(x)

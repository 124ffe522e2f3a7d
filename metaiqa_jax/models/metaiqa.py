"""The MetaIQA quality regressor: a backbone + the authors' head, and its pure `apply_fn`.

The head reproduces `Net` in the authors' code (zhuhancheng/MetaIQA), applied to the backbone's
`num_classes`-d logits (the ImageNet `fc` is kept): Linear(1000, 1024) - BatchNorm1d - PReLU (one
shared slope, init 0.25) - Dropout(0.5) - Linear(1024, 512) - BatchNorm1d - PReLU - Dropout(0.5) -
Linear(512, 1) - Sigmoid. Scores are in (0, 1): the normalised MOS scale of `metaiqa_jax.data`.

The backbone is any of `models.backbones.BACKBONES` (torchvision's ResNet-18/34/50 as in the
paper, or an ImageNet EfficientNet-Lite); `head_input` chooses what of it the head reads:
'logits' as the paper, or (EfficientNet-Lite) its pooled features or feature statistics.
"""

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metaiqa_jax.models import backbones
from metaiqa_jax.models.layers import BatchNorm, CONV_IMPLS, GRAD_ORDERS

Variables = Mapping[str, Any]
# apply_fn(variables, x, train, rngs) -> (scores (batch,), new model state {'batch_stats': ...}).
ApplyFn = Callable[..., tuple[jax.Array, dict]]


class PReLU(nn.Module):
  """PReLU with one slope shared over all channels (torch `nn.PReLU()`, weight shape (1,))."""
  init_slope: float = 0.25

  @nn.compact
  def __call__(self, x):
    slope = self.param('slope', nn.initializers.constant(self.init_slope), (1,), jnp.float32)
    return jnp.where(x >= 0, x, slope[0] * x)


class MetaIQAHead(nn.Module):
  """Head on `(batch, num_classes)` logits -> `(batch,)` quality in (0, 1).

  `features` gives the hidden sizes ((1024, 512) in the paper; tests use tiny ones). Submodules
  are `fc1, bn1, relu1, fc2, bn2, relu2, fc3` as in the authors' `Net`. `input_norm` puts a
  BatchNorm `bn0` first, standardising inputs whose features have unlike scales (the feature
  statistics of `head_input='stats'` span five orders of magnitude in variance); without it an
  inner SGD step of meta-training's 0.01 on such inputs saturated the sigmoid within 5 steps.
  """
  features: Sequence[int] = (1024, 512)
  dropout_rate: float = 0.5
  input_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    if self.input_norm:
      x = BatchNorm(name='bn0')(x, train)
    for i, width in enumerate(self.features, start=1):
      x = nn.Dense(width, name=f'fc{i}')(x)
      x = BatchNorm(name=f'bn{i}')(x, train)
      x = PReLU(name=f'relu{i}')(x)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(1, name=f'fc{len(self.features) + 1}')(x)
    return nn.sigmoid(x[:, 0])


def make_head(features: Sequence[int], dropout_rate: float, head_input: str) -> MetaIQAHead:
  """The head for a backbone output `head_input`: the logits as the paper, other features
  standardised first (`input_norm`)."""
  return MetaIQAHead(tuple(features), dropout_rate, input_norm=head_input != 'logits')


class MetaIQA(nn.Module):
  """Backbone (`params['backbone']`) + MetaIQA head (`params['head']`).

  Input: `(batch, H, W, 3)` float, ImageNet-normalised (see `metaiqa_jax.preprocess`).
  Output: `(batch,)` float32 quality scores in (0, 1).
  Training mode uses batch statistics in BatchNorm and needs a `'dropout'` rng.
  """
  arch: str = 'resnet18'
  width: float = 1.0
  num_classes: int = 1000
  head_features: Sequence[int] = (1024, 512)
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  conv_impl: str | None = None
  grad_order: int = 1
  head_input: str = 'logits'
  freeze: int = 0

  def setup(self):
    self.backbone = backbones.get(self.arch).build(self.width, self.num_classes, self.head_input,
                                                   self.dtype, self.conv_impl, self.grad_order,
                                                   self.freeze)
    self.head = make_head(self.head_features, self.dropout_rate, self.head_input)

  def __call__(self, x, train: bool = False):
    return self.head(self.backbone(x, train), train)

  def from_features(self, features, train: bool = False):
    """The head alone, on backbone outputs `features` (batch, D) (evaluation-mode ones when
    the backbone is frozen whole: `train.frozen_trunk`)."""
    return self.head(features, train)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that fixes the shapes of a MetaIQA model; saved with every checkpoint."""
  arch: str = 'resnet18'
  width: float = 1.0
  num_classes: int = 1000
  head_features: tuple[int, ...] = (1024, 512)
  dropout_rate: float = 0.5
  head_input: str = 'logits'

  def to_dict(self) -> dict:
    return dataclasses.asdict(self) | {'head_features': list(self.head_features)}

  def create(self, dtype: Any = jnp.float32, conv_impl: str | None = None,
             grad_order: int = 1, freeze: int = 0) -> 'MetaIQA':
    """The module these settings describe (`create_model`); `dtype`, `conv_impl`,
    `grad_order` and `freeze` are how it runs and trains, not part of its shapes."""
    return create_model(self.arch, self.width, self.num_classes, self.head_features,
                        self.dropout_rate, dtype, conv_impl, grad_order,
                        head_input=self.head_input, freeze=freeze)

  @classmethod
  def from_dict(cls, d: Mapping) -> 'ModelConfig':
    """The inverse of `to_dict` (checkpoints written before `head_input` existed read as
    'logits')."""
    return cls(**{**d, 'head_features': tuple(d['head_features'])})


def create_model(arch: str = 'resnet18', width: float = 1.0, num_classes: int = 1000,
                 head_features: Sequence[int] = (1024, 512), dropout_rate: float = 0.5,
                 dtype: Any = jnp.float32, conv_impl: str | None = None,
                 grad_order: int = 1, *, head_input: str = 'logits',
                 freeze: int = 0) -> MetaIQA:
  """Returns the MetaIQA module. Defaults are the paper's model (ResNet-18, 1000 logits).

  `arch` is any of `models.backbones.BACKBONES`; `head_input` what the head reads of it
  ('logits' | 'pooled' | 'stats', those the backbone offers); `freeze` how many backbone blocks
  (from the input, with the stem) train frozen: evaluation-mode BatchNorm, no gradient (the
  backbone's `max_freeze`, one more than its blocks: everything up to the pooled features,
  `backbones.output_is_fixed`).

  `dtype` (compute dtype of the convolutions), `conv_impl` ('xla' | 'matmul' | 'auto' | None:
  the backend's default, see `layers.Conv`) and `grad_order` (how many times the convolutions
  are differentiated where the model runs: 0 scoring, 1 training, 2 second-order
  meta-gradients through the backbone; 'auto' picks each layer's form for it) change how the
  model runs, not its parameters.
  """
  backbone = backbones.get(arch)
  if width <= 0:
    raise ValueError(f'width must be positive, got {width}')
  if backbone.fixed_width is not None and width != backbone.fixed_width:
    raise ValueError(f'{arch} has no width multiplier: width must be {backbone.fixed_width:g}, '
                     f'got {width}')
  if head_input not in backbone.head_inputs:
    raise ValueError(f'head_input must be one of {backbone.head_inputs} for {arch}; '
                     f'got {head_input!r}')
  if conv_impl not in (None, *CONV_IMPLS):
    raise ValueError(f'conv_impl must be one of {CONV_IMPLS} or None; got {conv_impl!r}')
  if grad_order not in GRAD_ORDERS:
    raise ValueError(f'grad_order must be one of {GRAD_ORDERS}; got {grad_order!r}')
  return MetaIQA(arch, float(width), int(num_classes), tuple(int(f) for f in head_features),
                 float(dropout_rate), dtype, conv_impl, grad_order, head_input, int(freeze))


def model_config(model: MetaIQA) -> ModelConfig:
  """The shape-defining settings of `model` (dtype is a run-time choice, not saved)."""
  return ModelConfig(model.arch, model.width, model.num_classes, tuple(model.head_features),
                     model.dropout_rate, model.head_input)


def init_variables(model: MetaIQA, rng: jax.Array, image_size: int = 224) -> dict:
  """Random initial `{'params', 'batch_stats'}` for `model` (float32 pytrees).

  The parameter shapes do not depend on `image_size`; it only sets the dummy input.
  """
  dummy = jnp.zeros((2, image_size, image_size, 3), jnp.float32)
  variables = jax.jit(lambda r: model.init(r, dummy, train=False))(rng)
  return {'params': variables['params'], 'batch_stats': variables['batch_stats']}


def make_apply_fn(model: nn.Module, *, on_features: bool = False) -> ApplyFn:
  """The pure function the meta-learner sees.

  `apply_fn(variables, x, train, rngs=None) -> (y, new_state)`: in training mode BatchNorm uses
  batch statistics and `new_state = {'batch_stats': updated running stats}`; in eval mode the
  running statistics are used and returned unchanged, so both modes return the same structure.
  `x` is images (batch, S, S, 3), or with `on_features` the backbone's outputs (batch, D), which
  only the head sees (`MetaIQA.from_features`; the backbone's variables pass through as they
  are).
  """
  method = MetaIQA.from_features if on_features else None

  def apply_fn(variables, x, train: bool, rngs=None):
    if train:
      y, state = model.apply(variables, x, train=True, rngs=rngs, mutable=['batch_stats'],
                             method=method)
      return y, {'batch_stats': state['batch_stats']}
    y = model.apply(variables, x, train=False, method=method)
    return y, {'batch_stats': variables['batch_stats']}
  return apply_fn


def jitted_backbone(model: MetaIQA) -> Callable:
  """`(variables, images (B, S, S, 3)) -> (B, D)`: `model`'s backbone in evaluation mode,
  jitted (compiled once per input shape); D by its `head_input`."""
  return jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.backbone(x, False)))


def infer_model_config(variables: Variables) -> ModelConfig:
  """Reads the architecture back from the parameter shapes of a MetaIQA variables tree.

  Lets `score`/`adapt` take bare variables (from `load_torch_weights` or a checkpoint).
  The dropout rate is not visible in the shapes and is returned as the paper's 0.5.

  Raises:
    ValueError: the tree is not a MetaIQA model's (names the missing or unexpected entry).
  """
  try:
    backbone = variables['params']['backbone']
    head = variables['params']['head']
    n_fc = sum(1 for name in head if name.startswith('fc'))
    head_in = head['fc1']['kernel'].shape[0]
    head_features = tuple(head[f'fc{i}']['kernel'].shape[1] for i in range(1, n_fc))
  except (KeyError, TypeError, AttributeError) as e:
    raise ValueError(f'not a MetaIQA variables tree: missing {e}') from e
  for arch, candidate in backbones.BACKBONES.items():
    found = candidate.recognise(backbone, head_in)
    if found is not None:
      return ModelConfig(arch, found['width'], found['num_classes'], head_features,
                         head_input=found['head_input'])
  raise ValueError(f'the backbone is none of {sorted(backbones.BACKBONES)} (top-level entries '
                   f'{sorted(backbone)[:6]}...)')

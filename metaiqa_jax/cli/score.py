"""`metaiqa-score`: predict image quality for files, directories and globs; write a CSV.

  metaiqa-score [--weights MODEL] [--output scores.csv] PATH...

PATH may be an image file, a directory (searched recursively for `metaiqa_jax.images.IMAGE_EXTENSIONS`)
or a glob (`'photos/**/*.jpg'`). The CSV has a header and one `path,score` row per readable image,
score in (0, 1), higher is better. Unreadable files and paths that match nothing are named on
stderr and skipped; the exit status is then 1 (2 for a usage or weights error).

Without `--weights` the shipped model scores (`metaiqa_jax.load_model()`: MetaIQA's head on a
frozen ImageNet EfficientNet-Lite0, trained on LIVE Challenge; its MODEL_CARD.md in
`metaiqa_jax/pretrained/`), each image as the mean over a 3 x 3 grid of 224 px crops at native
resolution. `--weights` is otherwise a model directory (`metaiqa-adapt`'s workdir), a training
run's checkpoint directory, a PyTorch file (torchvision ResNet, the authors' MetaIQA `.pt`, pyiqa
MetaIQA `.pth`; read safely, see `metaiqa_jax.weights`), or `random`: a randomly initialised
model (`--arch`, `--width`, `--seed`) whose scores are meaningless (a warning says so).

Example:
  metaiqa-score --output scores.csv 'photos/**/*.jpg'
"""

import csv
import glob
import os
import sys

from absl import app, flags
import jax

from metaiqa_jax import compile_cache, quality_model, scoring
from metaiqa_jax.cli import usage
from metaiqa_jax.images import IMAGE_EXTENSIONS, ImageReadError
from metaiqa_jax.models import BACKBONES, create_model, infer_model_config, init_variables
from metaiqa_jax.preprocess import READ_MAX_SIDE
from metaiqa_jax.weights import load_torch_weights

_WEIGHTS = flags.DEFINE_string(
    'weights', None, "Model directory, checkpoint directory, PyTorch .pt/.pth file, or 'random' "
    '(untrained). Unset: the shipped model.')
_OUTPUT = flags.DEFINE_string('output', None, 'CSV file to write; unset: stdout.')
_ARCH = flags.DEFINE_enum('arch', None, list(BACKBONES),
                          'Backbone. PyTorch files: checked against the file (default: read '
                          'from it). Random initialisation: default resnet18.')
_WIDTH = flags.DEFINE_float('width', 1.0, 'Channel multiplier for a random initialisation.')
_SEED = flags.DEFINE_integer('seed', 0, 'PRNG seed for a random initialisation.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None,
                                   "Model inputs per device call (each of an image's views "
                                   'counts one); default: scoring.default_batch_size() (2 on '
                                   'CPU, 32 on accelerators).', lower_bound=1)
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 224, 'Model input side, pixels (default for a '
                                   'checkpoint directory: the one it was trained with).',
                                   lower_bound=1)
_N_CROPS = flags.DEFINE_integer('n_crops', 1, '1: whole image; 2..10: mean over fixed crops '
                                '(default for a checkpoint directory: its own evaluation views).',
                                lower_bound=1, upper_bound=10)
_MAX_SIDE = flags.DEFINE_integer('max_side', READ_MAX_SIDE,
                                 'Shrink larger files to this longer side while decoding.')

_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None, 'Persistent XLA compilation cache folder, or off (default: '
    'metaiqa_jax.compile_cache.default_dir()).', allow_override=True)

_PROGRESS_MIN_IMAGES = 64


def _report(message: str):
  print(f'metaiqa-score: {message}', file=sys.stderr, flush=True)


def expand_paths(patterns) -> tuple[list[str], list[str]]:
  """Files, directories (recursive, image extensions only) and globs -> (files, unmatched).

  Files named explicitly are kept whatever their extension; order is that of the arguments,
  then sorted within each directory or glob; duplicates are dropped.
  """
  def images_under(directory):
    found = []
    for root, dirs, files in os.walk(directory):
      dirs.sort()
      found += [os.path.join(root, f) for f in sorted(files)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return found

  files, unmatched = [], []
  for pattern in patterns:
    if os.path.isdir(pattern):
      files += images_under(pattern)
    elif os.path.exists(pattern):
      files.append(pattern)
    elif glob.has_magic(pattern) and glob.glob(pattern, recursive=True):
      for match in sorted(glob.glob(pattern, recursive=True)):
        files += images_under(match) if os.path.isdir(match) else [match]
    else:
      unmatched.append(pattern)
  return list(dict.fromkeys(files)), unmatched


RANDOM = 'random'


def _load_variables():
  """(variables, description, InputSpec or None) from --weights: the shipped model (unset), a
  model or checkpoint directory, a PyTorch file, or a random initialisation ('random').

  A directory also gives the inputs its model was trained on, unless --image_size or --n_crops
  is given.
  """
  weights = _WEIGHTS.value
  explicit = flags.FLAGS['image_size'].present or flags.FLAGS['n_crops'].present
  if weights == RANDOM:
    arch = _ARCH.value or 'resnet18'
    model = create_model(arch, _WIDTH.value)
    _report('WARNING: --weights random: the model is RANDOMLY INITIALISED (untrained) '
            f'{arch} width {_WIDTH.value}, seed {_SEED.value}. The scores carry no information '
            'about quality.')
    return init_variables(model, jax.random.PRNGKey(_SEED.value)), 'untrained', None
  if weights is None or os.path.isdir(weights):
    loaded = quality_model.open_model(weights)
    if _ARCH.value is not None and _ARCH.value != loaded.module.arch:
      raise ValueError(f'--arch {_ARCH.value} but {weights or "the shipped model"} is a '
                       f'{loaded.module.arch}')
    source = loaded.info.get('directory', weights)
    if weights is None:
      source = f'the shipped model, {source}'
    elif 'checkpoint_step' in loaded.info:
      source = f'{weights}, step {loaded.info["checkpoint_step"]}'
    return loaded.variables, source, None if explicit else loaded.inputs
  return load_torch_weights(weights, arch=_ARCH.value), weights, None


def main(argv) -> int:
  patterns = argv[1:]
  if not patterns:
    raise app.UsageError('give at least one image file, directory or glob')
  compile_cache.enable(compile_cache.default_dir() if _COMPILATION_CACHE.value is None
                       else _COMPILATION_CACHE.value)
  paths, unmatched = expand_paths(patterns)
  for pattern in unmatched:
    _report(f'skipped {pattern}: no such file, directory or glob match')
  try:
    variables, source, inputs = _load_variables()
  except (ValueError, OSError) as e:
    _report(f'error: cannot load weights: {e}')
    return 2
  config = infer_model_config(variables)
  _report(f'scoring {len(paths)} images with {config.arch} width {config.width:g} ({source})')

  skipped = list(unmatched)

  def on_error(error: ImageReadError):
    skipped.append(error.path)
    _report(f'skipped {error}')

  scores = scoring.score(variables, paths, batch_size=_BATCH_SIZE.value,
                         image_size=_IMAGE_SIZE.value, n_crops=_N_CROPS.value, inputs=inputs,
                         max_side=_MAX_SIDE.value, on_error=on_error,
                         progress=len(paths) >= _PROGRESS_MIN_IMAGES)
  out = open(_OUTPUT.value, 'w', newline='') if _OUTPUT.value else sys.stdout
  try:
    writer = csv.writer(out)
    writer.writerow(['path', 'score'])
    unreadable = set(skipped)
    for path, value in zip(paths, scores):
      if path not in unreadable:
        writer.writerow([path, f'{value:.6f}'])
  finally:
    if out is not sys.stdout:
      out.close()
  if skipped:
    _report(f'{len(skipped)} of {len(paths) + len(unmatched)} inputs skipped (see above)')
    return 1
  return 0


def run():
  """Console-script entry point (`metaiqa-score`)."""
  usage.run_module(main, __name__)


if __name__ == '__main__':
  run()

"""`metaiqa-adapt`: adapt a quality model to your images from a few labelled ones.

  metaiqa-adapt --support labels.csv [--images DIR] --workdir OUT [--init default|DIR]
                [--mos_range LO,HI] [--steps N] [--lr LR] [--overwrite]

`labels.csv` lists the support images and their MOS: with a header, the name and score columns
are found by name (`image_name`/`name`/`file`..., `mos`/`score`/`dmos`...; as
`metaiqa_jax.data.CSVDataset`), without one they are columns 1 and 2. Names are relative to
`--images` (default: the CSV's folder). `--mos_range` is your rating scale (higher is better);
without it the support's own minimum..maximum is used, with a warning. Scores of the adapted
model are on that scale mapped to 0..1.

`--init` is the model to adapt: `default` (the shipped model, `metaiqa_jax.load_model()`), a
model directory (an earlier `metaiqa-adapt` workdir) or a training run's checkpoint directory.
With a backbone frozen whole (the shipped model), only the head adapts, on the features of each
image's evaluation crops computed once: `--steps` Adam steps at `--lr` over all of them
(`metaiqa_jax.adaptation`). It prints the support loss (MSE on the 0..1 scale) before and after,
and with 10 or more images a 5-fold leave-some-out SROCC (each fold scored by the model adapted
on the others) beside the unadapted model's.

The workdir receives a model directory (`model.json`, `variables.msgpack`) that
`metaiqa-score --weights OUT` and `metaiqa_jax.load_model(OUT)` read. A workdir already holding
one is refused unless `--overwrite`. Every input is checked before anything is written; a bad
one is named and the exit status is 2.

Example:
  metaiqa-adapt --support my_ratings.csv --images photos/ --mos_range 1,5 --workdir adapted/
  metaiqa-score --weights adapted/ photos/
"""

import os
import sys
import time

from absl import app, flags
import numpy as np

from metaiqa_jax import adaptation, compile_cache, quality_model
from metaiqa_jax.cli import usage
from metaiqa_jax.data import CSVDataset
from metaiqa_jax.data.base import UnreadableImagesError
from metaiqa_jax.images import ImageReadError

_SUPPORT = flags.DEFINE_string('support', None, 'CSV of support image names and MOS.')
_IMAGES = flags.DEFINE_string('images', None, 'Folder the names are relative to (default: the '
                              "CSV's folder).")
# allow_override: the training programs define --workdir, metaiqa-export --overwrite too (the
# console scripts share one process in tests).
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the adapted model directory is written.',
                               allow_override=True)
_INIT = flags.DEFINE_string('init', 'default', "'default' (the shipped model), a model directory "
                            'or a training checkpoint directory.')
_MOS_RANGE = flags.DEFINE_string('mos_range', None, 'LO,HI: the rating scale (default: the '
                                 "support's own range, with a warning).")
_STEPS = flags.DEFINE_integer('steps', None, 'Adam steps (default: adaptation.HEAD_STEPS for a '
                              'frozen backbone, else 20).', lower_bound=1)
_LR = flags.DEFINE_float('lr', None, 'Learning rate (default: adaptation.HEAD_LR for a frozen '
                         'backbone, else 1e-4).', lower_bound=0.0)
_SEED = flags.DEFINE_integer('seed', 0, 'Seeds dropout masks and the leave-some-out folds.',
                             allow_override=True)  # metaiqa-score has --seed too.
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace a model already in --workdir.',
                               allow_override=True)
_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None, 'Persistent XLA compilation cache folder, or off (default: '
    'metaiqa_jax.compile_cache.default_dir()).', allow_override=True)

MIN_SUPPORT = 2
HELD_OUT_MIN = 10   # Leave-some-out SROCC from this many support images.
HELD_OUT_FOLDS = 5


class UsageProblem(Exception):
  """A bad argument or input: printed as one line, exit status 2."""


def _report(message: str):
  print(f'metaiqa-adapt: {message}', file=sys.stderr, flush=True)


def parse_mos_range(text: str | None) -> tuple[float, float] | None:
  if text is None:
    return None
  try:
    lo, hi = (float(v) for v in text.split(','))
  except ValueError as e:
    raise UsageProblem(f'--mos_range must be LO,HI (two numbers), got {text!r}') from e
  if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
    raise UsageProblem(f'--mos_range must have finite LO < HI, got {text!r}')
  return lo, hi


def read_support(csv_path: str, image_root: str, mos_range) -> CSVDataset:
  """The support set, every image decoded once to find unreadable ones.

  Raises:
    UsageProblem: the CSV is missing or malformed (NaN or text MOS, duplicate names, a MOS
      outside `mos_range`), lists fewer than 2 images, or names missing or unreadable images.
  """
  try:
    support = CSVDataset(csv_path, image_root, mos_range=mos_range, dataset='support')
    support.verify()
  except UnreadableImagesError as e:
    raise UsageProblem(str(e)) from e
  except (ValueError, OSError) as e:
    raise UsageProblem(str(e) if csv_path in str(e) else f'{csv_path}: {e}') from e
  if len(support) < MIN_SUPPORT:
    raise UsageProblem(f'{csv_path} lists {len(support)} image; adaptation needs at least '
                       f'{MIN_SUPPORT}')
  return support


def check_workdir(workdir: str, overwrite: bool) -> None:
  if quality_model.is_model_directory(workdir) and not overwrite:
    raise UsageProblem(f'{workdir} already holds a model ({quality_model.MODEL_FILE}); pass '
                       '--overwrite to replace it, or choose another --workdir')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageProblem(f'--workdir {workdir} exists and is not a directory')


def _loss(scores: np.ndarray, mos: np.ndarray) -> float:
  return float(np.mean((scores - mos) ** 2))


def run_adaptation(model: quality_model.QualityModel, paths, mos: np.ndarray, steps, lr,
                   seed: int) -> tuple[quality_model.QualityModel, dict]:
  """Adapts `model` to the images at `paths` with `mos` (0..1); returns it and the figures
  printed (support loss before/after, leave-some-out SROCC where k >= HELD_OUT_MIN)."""
  k, held_out = len(paths), None
  if adaptation.head_only_trains(model.module):
    steps = adaptation.HEAD_STEPS if steps is None else steps
    lr = adaptation.HEAD_LR if lr is None else lr
    features = adaptation.support_features(model.module, model.variables, paths, model.inputs)
    before = adaptation.head_scores(model.module, model.variables, features)
    variables = adaptation.adapt_head(model.module, model.variables, features, mos, steps=steps,
                                      lr=lr, seed=seed)
    adapted = quality_model.QualityModel(model.module, variables, model.inputs)
    after = adaptation.head_scores(model.module, variables, features)
    if k >= HELD_OUT_MIN:
      held_out = adaptation.held_out_srocc(model.module, model.variables, features, mos,
                                           folds=HELD_OUT_FOLDS, seed=seed, steps=steps, lr=lr)
  else:
    steps = 20 if steps is None else steps
    lr = 1e-4 if lr is None else lr
    before = model.score(paths)
    variables = adaptation.adapt(model.variables, (paths, mos), model=model.module, steps=steps,
                                 lr=lr, image_size=model.inputs.image_size, seed=seed)
    adapted = quality_model.QualityModel(model.module, variables, model.inputs)
    after = adapted.score(paths)
  figures = {'loss_before': _loss(before, mos), 'loss_after': _loss(after, mos), 'steps': steps,
             'lr': lr, 'k': k}
  if held_out is not None:
    figures['held_out'] = held_out
  return adapted, figures


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  started = time.time()
  compile_cache.enable(compile_cache.default_dir() if _COMPILATION_CACHE.value is None
                       else _COMPILATION_CACHE.value)
  try:
    if not _SUPPORT.value or not _WORKDIR.value:
      raise UsageProblem('--support and --workdir are required')
    mos_range = parse_mos_range(_MOS_RANGE.value)
    check_workdir(_WORKDIR.value, _OVERWRITE.value)
    image_root = _IMAGES.value or os.path.dirname(os.path.abspath(_SUPPORT.value))
    support = read_support(_SUPPORT.value, image_root, mos_range)
    meta = support.metadata()
    if mos_range is None:
      mos_range = (float(meta['mos'].min()), float(meta['mos'].max()))
      _report(f'WARNING: no --mos_range: using the support\'s own range {mos_range[0]:g}..'
              f'{mos_range[1]:g} as the rating scale (the lowest-rated image becomes 0, the '
              'highest 1); give --mos_range LO,HI if your scale is wider')
    try:
      model = quality_model.open_model(None if _INIT.value == 'default' else _INIT.value)
    except (ValueError, OSError) as e:
      raise UsageProblem(f'--init {_INIT.value}: {e}') from e
    paths = [support.path(i) for i in range(len(support))]
    mos = np.asarray(meta['mos_norm'], np.float32)
    adapted, figures = run_adaptation(model, paths, mos, _STEPS.value, _LR.value, _SEED.value)
  except (UsageProblem, ImageReadError) as e:
    _report(f'error: {e}')
    return 2
  if not np.isfinite(figures['loss_after']):
    _report('error: the adapted model\'s support loss is not finite (lower --lr); nothing written')
    return 2
  card = {'adapted_from': _INIT.value if _INIT.value != 'default' else
          'the shipped model (metaiqa_jax.pretrained)', 'support': os.path.abspath(_SUPPORT.value),
          'mos_range': list(mos_range), 'adaptation': figures}
  quality_model.save(adapted, _WORKDIR.value, card=card)
  print(f'support: {figures["k"]} images; {figures["steps"]} steps at lr {figures["lr"]:g}')
  print(f'support loss (MSE, 0..1 scale): before {figures["loss_before"]:.4f}, after '
        f'{figures["loss_after"]:.4f}')
  if 'held_out' in figures:
    held = figures['held_out']
    print(f'leave-some-out SROCC ({held["folds"]} folds): unadapted {held["before"]:.3f}, '
          f'adapted {held["after"]:.3f}')
  else:
    print(f'(leave-some-out SROCC needs at least {HELD_OUT_MIN} support images)')
  print(f'wrote {_WORKDIR.value} in {time.time() - started:.0f} s; score with: metaiqa-score '
        f'--weights {_WORKDIR.value} PATH...')
  return 0


def run():
  """Console-script entry point (`metaiqa-adapt`)."""
  usage.run_module(main, __name__)


if __name__ == '__main__':
  run()

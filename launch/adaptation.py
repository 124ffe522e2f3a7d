"""Few-shot adaptation of the shipped model to synthetic distortion types: SROCC before and after.

  python launch/adaptation.py --root=../shared/data/livec_dev_native/ChallengeDB_release \
    [--out=bench/results/adaptation.json] [--sweep]

Photos: the first --photos (60) held-out test images of split 0 of the LIVE Challenge dev half at
native resolution, the split the shipped model was trained on (`metaiqa_jax.pretrained.build`),
so neither its training nor the demo (which uses the bundled photos) saw them. They are
authentic photos, not pristine ones: the synthetic distortions add to what they already have.
Tasks: each of the demo's 5 held-out KADID-10k distortion types (lens blur, Lab saturation,
JPEG, white noise, pixelate; `configs/demo.py`) at its 5 levels (`data.SyntheticBank`), labelled
with the KADID-10k human mean for each (type, level). Draw d (of --draws): the photos are split
in two seeded halves, a support pool and a query half; k images are drawn from the pool's 5 x 30;
the model is adapted on them by `metaiqa_jax.adaptation` with its defaults (`adapt_head` on the
frozen backbone's features of each image's 9 evaluation crops) and scored on all 150 query
images of the type, before and after.

--sweep runs the grid of Adam steps x learning rates behind `adaptation.HEAD_STEPS` and
`HEAD_LR` instead, on 4 of the demo's training types (Gaussian blur, JPEG2000, multiplicative
noise, darken: never the held-out ones) and 2 draws.

Writes the rows and their summary (mean and 95% t-interval over draws, per type and k, and the
mean over types) to --out and prints the table the README shows
(`python launch/readme_tables.py --adaptation=bench/results/adaptation.json`).
"""

import json
import os
import sys
import time

from absl import app, flags
import numpy as np

from metaiqa_jax import adaptation, metrics, quality_model
from metaiqa_jax.data import KADID_TYPES, SyntheticBank
from metaiqa_jax.images import read_image
from metaiqa_jax.pretrained import build
from metaiqa_jax.train import reporting, setup

HELD_OUT_TYPES = (2, 8, 10, 11, 21)   # configs/demo.py: demo.held_out_types
SWEEP_TYPES = (1, 9, 14, 17)
SWEEP_STEPS = (10, 30, 100, 300)
SWEEP_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
SHOTS = (5, 20)
NAMES = ('before', 'after')  # What metrics.summarise averages.

_ROOT = flags.DEFINE_string('root', None, 'LIVE Challenge root at native resolution.')
_OUT = flags.DEFINE_string('out', 'bench/results/adaptation.json', 'JSON to write.')
_PHOTOS = flags.DEFINE_integer('photos', 60, 'Held-out LIVE Challenge photos used.')
_DRAWS = flags.DEFINE_integer('draws', 4, 'Support/query draws per type and k.')
_SWEEP = flags.DEFINE_bool('sweep', False, 'The steps x lr sweep on training types instead.')


def held_out_photos(root: str, count: int) -> list[np.ndarray]:
  """The first `count` test images of the shipped model's split, as uint8 arrays."""
  config = build.recipe_config(root)
  source = setup.finetune_source(config.finetune)
  split = build.recipe_split(config, source)
  return [read_image(source.path(int(i))) for i in split['test'][:count]]


def type_features(model, photos, dist_type: int):
  """(features (N, V, D), mos_norm (N,), photo index (N,)) of every level of `dist_type`."""
  bank = SyntheticBank(photos, types=(dist_type,), progress=False, workers=2)
  meta = bank.metadata()
  images = [bank[i]['image'] for i in range(len(bank))]
  features = adaptation.support_features(model.module, model.variables, images, model.inputs)
  return features, np.asarray(meta['mos_norm'], np.float32), np.asarray(meta['ref_id'])


def draw(photo_ids, k: int, seed: int):
  """(support indices, query indices): photos halved with `seed`, k images from the first."""
  rng = np.random.default_rng([seed, k])
  photos = np.unique(photo_ids)
  pool_photos = rng.choice(photos, len(photos) // 2, replace=False)
  in_pool = np.isin(photo_ids, pool_photos)
  support = rng.choice(np.flatnonzero(in_pool), k, replace=False)
  return support, np.flatnonzero(~in_pool)


def evaluate(model, features, mos, photo_ids, k, seed, **adapt_kwargs) -> tuple[float, float]:
  support, query = draw(photo_ids, k, seed)
  before = adaptation.head_scores(model.module, model.variables, features[query])
  adapted = adaptation.adapt_head(model.module, model.variables, features[support], mos[support],
                                  seed=seed, **adapt_kwargs)
  after = adaptation.head_scores(model.module, adapted, features[query])
  return metrics.srocc(before, mos[query]), metrics.srocc(after, mos[query])


def table(summary, label) -> str:
  lines = ['| ' + label + ' | k | SROCC before | SROCC after | change |', '|---|---|---|---|---|']
  for r in summary:
    lines.append(f'| {r["name"]} | {r["k"]} | {r["before"]:.3f} ± {r["before_ci95"]:.3f} | '
                 f'{r["after"]:.3f} ± {r["after_ci95"]:.3f} | {r["after"] - r["before"]:+.3f} |')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if not _ROOT.value:
    raise app.UsageError('--root is required')
  started = time.time()
  model = quality_model.load_model()
  photos = held_out_photos(_ROOT.value, _PHOTOS.value)
  types = SWEEP_TYPES if _SWEEP.value else HELD_OUT_TYPES
  draws = 2 if _SWEEP.value else _DRAWS.value
  settings = ([{'steps': s, 'lr': lr} for s in SWEEP_STEPS for lr in SWEEP_LRS] if _SWEEP.value
              else [{}])
  rows = []
  for t in types:
    features, mos, photo_ids = type_features(model, photos, t)
    for setting in settings:
      for k in SHOTS:
        for d in range(draws):
          before, after = evaluate(model, features, mos, photo_ids, k, d, **setting)
          rows.append({'type': t, 'name': KADID_TYPES[t - 1], 'k': k, 'draw': d,
                       'before': before, 'after': after, **setting})
    print(f'type {t} ({KADID_TYPES[t - 1]}) done, {time.time() - started:.0f} s', flush=True)
  if _SWEEP.value:
    summary = metrics.summarise(rows, ('steps', 'lr', 'k'), NAMES)
    for r in summary:
      r['name'] = f'{r["steps"]} steps, lr {r["lr"]:g}'
    text = table(summary, 'Adam steps, learning rate (mean of 4 training types x 2 draws)')
  else:
    summary = metrics.summarise(rows, ('type', 'name', 'k'), NAMES)
    # The mean over types of each type's mean over draws; its interval is over the types.
    summary += metrics.summarise([{**r, 'name': f'mean of the {len(types)} types'}
                                  for r in metrics.summarise(rows, ('type', 'k'), NAMES)],
                                 ('name', 'k'), NAMES)
    text = table(summary, 'held-out type')
  report = {'program': 'adaptation', 'sweep': _SWEEP.value, 'photos': len(photos),
            'draws': draws, 'shots': SHOTS, 'types': types, 'defaults': {
                'steps': adaptation.HEAD_STEPS, 'lr': adaptation.HEAD_LR},
            'rows': rows, 'summary': summary, 'table': text, 'machine': reporting.machine(),
            'wall_time_s': time.time() - started, 'command': ' '.join(sys.argv)}
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, 'w') as f:
    json.dump(report, f, indent=1)
  print(text)
  print(f'({report["wall_time_s"]:.0f} s; wrote {_OUT.value})')


if __name__ == '__main__':
  app.run(main)

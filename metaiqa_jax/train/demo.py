"""The embedded default: does a meta-learned initialisation adapt better to an unseen distortion?

`demo(config, workdir)` is what `metaiqa-demo` runs, on the synthetic bank made from the bundled
photos (`metaiqa_jax.data.SyntheticBank`: the 24 Kodak photos shipped with the package and the
11 inside our dependencies' wheels, distorted at KADID-10k's 512 px scale; labels are the
KADID-10k human mean for each distortion type and level, not a human study of these images):

1. Hold out `demo.held_out_types` (one per family: blur, colour, compression, noise, spatial) and
   `demo.held_out_photos` photos (content never seen in training).
2. Train three initialisations of the same network on the remaining types and photos:
   `meta` (meta-training), `multitask` (the paper's baseline: the same images, gradient steps
   and optimiser without the inner loop; both by `pretraining.pretrain`) and `scratch` (random
   initialisation, no training).
3. Sanity: each initialisation as it is scores the held-out photos under every *training* type
   (pooled SROCC/PLCC, report rows `sanity`): has it learned the quality scale it was trained on,
   for content it never saw?
4. For each held-out type, each k in `lodo.shots` and each of `demo.seeds` draws: adapt each
   initialisation with the same `lodo.adapt_steps[-1]` SGD steps at `lodo.adapt_lr` on k images
   of that type (training photos), then score the type's images of the held-out photos.

Writes `report.json` (`sanity`: rows `{method, srocc, plcc}`; `results`: rows `{method,
held_out_type, k, seed, srocc, plcc}`; `summary`: mean and 95% t-interval per method, k and
type, and over types), `summary.md` (both tables, also printed) and `srocc_vs_k.png` to the
workdir; the training runs live in `workdir/meta/` and `workdir/multitask/` and are resumed if
the demo is run again. Every number is a deterministic function of the config.
"""

import os
import time

import jax
import ml_collections
import numpy as np

from metaiqa_jax import checkpoints, metrics, models, preprocess
from metaiqa_jax.data import KADID_TYPES, SyntheticBank, views
from metaiqa_jax.models import construct
from metaiqa_jax.train import defaults, evaluation, pretraining, reporting, supervised

METHODS = ('meta', 'multitask', 'scratch')
SANITY_TITLE = 'Sanity: SROCC/PLCC on held-out photos under the training types (no adaptation)'
HELD_OUT_TITLE = 'SROCC/PLCC on held-out distortion types and photos after k-shot adaptation'


def split_photos(bank, held_out_photos: int, seed: int) -> np.ndarray:
  """The reference ids (photos) kept out of training, drawn with `seed`."""
  photos = np.unique(bank.metadata()['ref_id'])
  if not 0 < held_out_photos < len(photos) - 1:
    raise ValueError(f'demo.held_out_photos={held_out_photos}: need at least 1 and leave 2 of '
                     f'the {len(photos)} photos for training')
  return np.sort(np.random.default_rng(seed).choice(photos, held_out_photos, replace=False))


def training_source(bank, test_photos) -> views.Subset:
  """The bank without the held-out photos (all types: meta-training drops the held-out ones)."""
  return views.Subset(bank, np.flatnonzero(~np.isin(bank.metadata()['ref_id'], test_photos)))


def sanity_row(name: str, predict, variables, bank, test_photos, config) -> dict:
  """`{method, srocc, plcc}` of `variables` (no adaptation) on the held-out photos under every
  training type, all images pooled."""
  meta_ = bank.metadata()
  indices = np.flatnonzero(np.isin(meta_['ref_id'], test_photos)
                           & ~np.isin(meta_['dist_type'], config.demo.held_out_types))
  result, _, _ = evaluation.evaluate_indices(predict, variables, bank, indices, config)
  return {'method': name, 'srocc': result['srocc'], 'plcc': result['plcc'],
          'images': int(indices.size)}


def evaluate_method(name, adapt_predict, inner_lr, variables, bank, test_photos, config):
  """Rows of one initialisation on every held-out type, k and seed."""
  meta_ = bank.metadata()
  is_test = np.isin(meta_['ref_id'], test_photos)
  inputs = preprocess.InputSpec.from_config(config.data)
  labels = np.asarray(meta_['mos_norm'], np.float32)
  rows = []
  for t in config.demo.held_out_types:
    of_type = meta_['dist_type'] == t
    pool, query = np.flatnonzero(of_type & ~is_test), np.flatnonzero(of_type & is_test)
    query_set = (evaluation.eval_views(bank, query, inputs), labels[query])
    for seed in range(config.demo.seeds):
      rng = np.random.default_rng([config.seed, t, seed])
      draw = rng.choice(pool, max(config.lodo.shots), replace=max(config.lodo.shots) > pool.size)
      rows += evaluation.shot_rows(
          adapt_predict, inner_lr, variables,
          (evaluation.eval_views(bank, draw, inputs), labels[draw]), query_set,
          shots=config.lodo.shots, steps=(max(config.lodo.adapt_steps),),
          key=jax.random.fold_in(jax.random.key(config.seed), seed),
          fields={'method': name, 'held_out_type': int(t), 'type_name': KADID_TYPES[t - 1],
                  'seed': seed})
  return rows


def demo(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the demo; returns the report also written to `workdir/report.json`."""
  defaults.validate(config)
  started = time.time()
  workdir = os.fspath(checkpoints.ensure_writable(workdir))
  unknown = set(config.demo.held_out_types) - set(range(1, 26))
  if unknown:
    raise ValueError(f'config.demo.held_out_types: {sorted(unknown)} are not KADID types 1..25')
  bank = SyntheticBank(max_side=config.data.synthetic_max_side, seed=config.seed,
                       workers=config.data.synthetic_workers)
  test_photos = split_photos(bank, config.demo.held_out_photos, config.seed)
  train_config = ml_collections.ConfigDict(config.to_dict())
  train_config.data.held_out_types = tuple(config.demo.held_out_types)
  runs = pretraining.pretrain(train_config, workdir, training_source(bank, test_photos))

  model = construct.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  steps = max(config.lodo.adapt_steps)
  adapt_predict = {s: evaluation.make_adapt_predict(apply_fn, steps=s, adapt=config.meta.adapt,
                                                    batch_norm=config.meta.batch_norm)
                   for s in (0, steps)}
  inits = {method: checkpoints.restore_variables(run)[1] for method, run in runs.items()}
  inits['scratch'] = models.init_variables(model, jax.random.key(config.seed),
                                           config.data.image_size)
  predict = supervised.make_predict(apply_fn)
  sanity = [sanity_row(name, predict, inits[name], bank, test_photos, config)
            for name in METHODS]
  rows = []
  for name in METHODS:
    rows += evaluate_method(name, adapt_predict, config.lodo.adapt_lr, inits[name], bank,
                            test_photos, config)
  by_type = metrics.summarise(rows, ('method', 'held_out_type', 'k'))
  # Over types: average each draw over the held-out types first, then the interval over draws.
  per_draw = metrics.summarise(rows, ('method', 'k', 'seed'))
  overall = metrics.summarise(per_draw, ('method', 'k'))
  reporting.plot_curves(
      os.path.join(workdir, 'srocc_vs_k.png'), list(config.lodo.shots),
      {m: [r['srocc'] for r in overall if r['method'] == m] for m in METHODS},
      'k (labelled images of the held-out type)', 'SROCC on held-out type and photos',
      title=f'{len(config.demo.held_out_types)} held-out types, {steps} adaptation steps')
  wall = time.time() - started
  report = {'program': 'demo', 'sanity': sanity, 'results': rows, 'summary': overall,
            'summary_by_type': by_type,
            'held_out_types': {int(t): KADID_TYPES[t - 1] for t in config.demo.held_out_types},
            'held_out_photos': [int(p) for p in test_photos], 'wall_time_s': wall,
            'machine': reporting.machine(),
            'labels': 'KADID-10k human mean DMOS per (distortion type, level) applied to '
                      'synthetic distortions of bundled photos; not a human study of these '
                      'images', 'config': config.to_dict()}
  markdown = summary_markdown(report)
  reporting.write_outputs(workdir, report, markdown)
  print(f'\n{markdown}\n({wall:.0f} s)')
  return report


def summary_markdown(report: dict) -> str:
  """The demo's two tables (sanity, then held-out types) from its report, as printed, written
  to summary.md and pasted into the README (`launch/readme_tables.py`)."""
  sanity = reporting.markdown_table(report['sanity'], ['method', 'srocc', 'plcc', 'images'])
  held_out = reporting.interval_table(report['summary'], ['method', 'k'])
  draws = report['config']['demo']['seeds']
  return (f'{SANITY_TITLE}:\n\n{sanity}\n{HELD_OUT_TITLE} (mean ± 95% CI over {draws} '
          f'draws of the k images, averaged over the held-out types):\n\n{held_out}')

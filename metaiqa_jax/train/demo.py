"""The embedded default: does a meta-learned initialisation adapt better to an unseen distortion?

`demo(config, workdir)` is what `metaiqa-demo` runs, on the synthetic bank made from the photos
that pip-installed packages ship (`metaiqa_jax.data.SyntheticBank`; labels are the KADID-10k
human mean for each distortion type and level, not a human study of these images):

1. Hold out `demo.held_out_types` (one per family: blur, colour, compression, noise, spatial) and
   `demo.held_out_photos` photos (content never seen in training).
2. Train three initialisations of the same network on the remaining types and photos:
   `meta` (meta-training, `meta_train`), `multitask` (the paper's baseline: the same images,
   gradient steps and optimiser without the inner loop, `multitask_train`) and `scratch`
   (random initialisation, no training).
3. For each held-out type, each k in `lodo.shots` and each of `demo.seeds` draws: adapt each
   initialisation with the same `lodo.adapt_steps[-1]` SGD steps at `lodo.adapt_lr` on k images
   of that type (training photos), then score the type's images of the held-out photos.

Writes `report.json` (`results`: rows `{method, held_out_type, k, seed, srocc, plcc}`;
`summary`: mean and 95% t-interval per method, k and type, and over types), `summary.md` (the
table, also printed) and `srocc_vs_k.png` to the workdir; the training runs live in
`workdir/meta/` and `workdir/multitask/` and are resumed if the demo is run again.
"""

import logging
import os
import time

import jax
import ml_collections
import numpy as np
import scipy.stats

from metaiqa_jax import checkpoints, metrics, models, preprocess
from metaiqa_jax.data import KADID_TYPES, SyntheticBank, views
from metaiqa_jax.train import (common, defaults, evaluation, lodo, meta_train, multitask,
                               reporting)

METHODS = ('meta', 'multitask', 'scratch')


def demo_config(smoke: bool = False) -> ml_collections.ConfigDict:
  """The demo's settings (see configs/demo.py for the command, runtime and measured result).

  `smoke=True`: the same pipeline at toy size for CI (2 held-out types, 4 training steps,
  tiny model); its numbers mean nothing.
  """
  c = defaults.base_config()
  c.model.width = 0.125                 # 8-16-32-64 channels.
  c.model.num_classes = 64
  c.model.head_features = (64, 32)
  c.model.dropout_rate = 0.2
  c.data.sources = ('synthetic',)
  c.data.roots = ('',)
  c.data.image_size = 64
  c.data.resize_to = 72
  c.data.synthetic_max_side = 96
  c.data.val_fraction = 0.25
  c.meta.inner_steps = 1
  c.meta.inner_lr = 0.05
  c.meta.inner_lr_head = 0.05
  c.meta.support_size = 8
  c.meta.query_size = 8
  c.meta.tasks_per_batch = 4
  c.optim.lr = 1e-3
  c.optim.head_lr = 1e-3
  c.optim.schedule = 'cosine'
  c.optim.decay_steps = 500
  c.num_steps = 500
  c.log_every = 10
  c.eval_every = 250
  c.checkpoint_every = 250
  c.eval_tasks = 2
  c.lodo.shots = (0, 5, 10, 20)
  c.lodo.adapt_steps = (1,)            # = meta.inner_steps: the procedure meta-training optimised.
  c.lodo.adapt_lr = 0.05
  c.lodo.test_size = 0
  c.demo.seeds = 8
  if smoke:
    c.model.width = 0.0625
    c.model.num_classes = 10
    c.model.head_features = (16, 8)
    c.data.image_size = 32
    c.data.resize_to = 36
    c.data.synthetic_max_side = 48
    c.meta.support_size = 4
    c.meta.query_size = 4
    c.meta.tasks_per_batch = 2
    c.optim.decay_steps = 4
    c.num_steps = 4
    c.eval_every = 2
    c.checkpoint_every = 2
    c.eval_tasks = 1
    c.lodo.shots = (0, 3)
    c.lodo.adapt_steps = (1,)
    c.demo.held_out_types = (10, 11)
    c.demo.seeds = 2
  return c


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


def t_interval(values) -> tuple[float, float, float]:
  """Mean and 95% Student-t interval half-width of `values` (NaNs dropped)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return float('nan'), float('nan'), 0
  if v.size == 1:
    return float(v[0]), float('nan'), 1
  half = scipy.stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
  return float(v.mean()), float(half), int(v.size)


def summarise(rows, keys) -> list[dict]:
  """Per group of `keys`: mean and 95% interval of SROCC and PLCC over the rows' draws."""
  groups = {}
  for row in rows:
    groups.setdefault(tuple(row[k] for k in keys), []).append(row)
  out = []
  for key, group in sorted(groups.items()):
    entry = dict(zip(keys, key))
    for name in ('srocc', 'plcc'):
      mean, half, n = t_interval([r[name] for r in group])
      entry |= {name: mean, f'{name}_ci95': half, 'n': n}
    out.append(entry)
  return out


def evaluate_method(name, adapt_predict, inner_lr, variables, bank, test_photos, config):
  """Rows of one initialisation on every held-out type, k and seed."""
  meta_ = bank.metadata()
  is_test = np.isin(meta_['ref_id'], test_photos)
  steps = max(config.lodo.adapt_steps)
  image = lambda i: preprocess.eval_transform(bank[int(i)]['image'], config.data.image_size)
  labels = np.asarray(meta_['mos_norm'], np.float32)
  rows = []
  for t in config.demo.held_out_types:
    of_type = meta_['dist_type'] == t
    pool, query = np.flatnonzero(of_type & ~is_test), np.flatnonzero(of_type & is_test)
    query_x = np.stack([image(i) for i in query])
    for seed in range(config.demo.seeds):
      rng = np.random.default_rng([config.seed, t, seed])
      draw = rng.choice(pool, max(config.lodo.shots), replace=max(config.lodo.shots) > pool.size)
      support_x = np.stack([image(i) for i in draw])
      for k in config.lodo.shots:
        fn = adapt_predict[steps if k else 0]
        pred = np.asarray(fn(inner_lr, variables, support_x[:k], labels[draw[:k]], query_x,
                             jax.random.key(seed)))
        row = {'method': name, 'held_out_type': int(t), 'type_name': KADID_TYPES[t - 1],
               'k': int(k), 'seed': seed}
        try:
          row |= {'srocc': metrics.srocc(pred, labels[query]),
                  'plcc': metrics.plcc(pred, labels[query])}
        except ValueError as e:  # Constant predictions: a result, reported as NaN.
          row |= {'srocc': float('nan'), 'plcc': float('nan'), 'error': str(e)}
        rows.append(row)
  return rows


def demo(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the demo; returns the report also written to `workdir/report.json`."""
  defaults.validate(config)
  started = time.time()
  workdir = os.fspath(checkpoints.ensure_writable(workdir))
  unknown = set(config.demo.held_out_types) - set(range(1, 26))
  if unknown:
    raise ValueError(f'config.demo.held_out_types: {sorted(unknown)} are not KADID types 1..25')
  bank = SyntheticBank(max_side=config.data.synthetic_max_side, seed=config.seed)
  test_photos = split_photos(bank, config.demo.held_out_photos, config.seed)
  train_source = training_source(bank, test_photos)
  train_config = ml_collections.ConfigDict(config.to_dict())
  train_config.data.held_out_types = tuple(config.demo.held_out_types)
  meta_train.meta_train(train_config, os.path.join(workdir, 'meta'), source=train_source)
  multitask.multitask_train(train_config, os.path.join(workdir, 'multitask'),
                            source=train_source)

  model = common.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  steps = max(config.lodo.adapt_steps)
  adapt_predict = {s: evaluation.make_adapt_predict(apply_fn, steps=s, adapt=config.meta.adapt)
                   for s in (0, steps)}
  inits = {'meta': checkpoints.restore_variables(os.path.join(workdir, 'meta'))[1],
           'multitask': checkpoints.restore_variables(os.path.join(workdir, 'multitask'))[1],
           'scratch': models.init_variables(model, jax.random.key(config.seed),
                                            config.data.image_size)}
  rows = []
  for name in METHODS:
    rows += evaluate_method(name, adapt_predict, config.lodo.adapt_lr, inits[name], bank,
                            test_photos, config)
  by_type = summarise(rows, ('method', 'held_out_type', 'k'))
  # Over types: average each draw over the held-out types first, then the interval over draws.
  per_draw = summarise(rows, ('method', 'k', 'seed'))
  overall = summarise(per_draw, ('method', 'k'))
  table = reporting.markdown_table(
      [r | {'SROCC': f"{r['srocc']:.3f} ± {r['srocc_ci95']:.3f}",
            'PLCC': f"{r['plcc']:.3f} ± {r['plcc_ci95']:.3f}"} for r in overall],
      ['method', 'k', 'SROCC', 'PLCC', 'n'])
  reporting.plot_curves(
      os.path.join(workdir, 'srocc_vs_k.png'), list(config.lodo.shots),
      {m: [r['srocc'] for r in overall if r['method'] == m] for m in METHODS},
      'k (labelled images of the held-out type)', 'SROCC on held-out type and photos',
      title=f'{len(config.demo.held_out_types)} held-out types, {steps} adaptation steps')
  wall = time.time() - started
  report = {'program': 'demo', 'results': rows, 'summary': overall, 'summary_by_type': by_type,
            'held_out_types': {int(t): KADID_TYPES[t - 1] for t in config.demo.held_out_types},
            'held_out_photos': [int(p) for p in test_photos], 'wall_time_s': wall,
            'labels': 'KADID-10k human mean DMOS per (distortion type, level) applied to '
                      'synthetic distortions of bundled photos; not a human study of these '
                      'images', 'config': config.to_dict()}
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write(table)
  reporting.write_report(workdir, report)
  print(f'\nSROCC/PLCC on held-out distortion types and photos (mean ± 95% CI over '
        f'{config.demo.seeds} draws, averaged over types), {wall:.0f} s:\n{table}')
  return report

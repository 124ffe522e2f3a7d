"""Transfer to authentic distortions: does synthetic pretraining help on a human-rated dataset?

`transfer(config, workdir)` is what `metaiqa-transfer` runs (default config:
`configs/transfer_livec.py`):

1. Pretraining: meta-training and multitask training on the whole synthetic bank
   (`pretraining.pretrain`, in `workdir/pretrain/`), unless `transfer.meta_workdir` /
   `transfer.multitask_workdir` name finished runs to reuse.
2. Fine-tuning: each of `transfer.inits` ('scratch' = random, 'multitask', 'meta') is
   fine-tuned on the same `finetune.n_splits` seeded train/val/test splits of
   `finetune.source` under `finetune.root` (`finetuning.finetune_split`: the epoch is chosen on
   the val part of train, never on test). The sharpness baseline (variance of the Laplacian,
   `baselines.sharpness`) is scored on the same test parts.
3. Final models: each init is fine-tuned once more on the whole dataset (a seeded
   `finetune.val_fraction` carved out for epoch selection) into `workdir/final/<init>/`, a
   checkpoint that carries its model and input settings, so
   `metaiqa-evaluate --config.model.init=workdir/final/<init> --config.finetune.root=OTHER ...`
   needs nothing else.

Writes `report.json` (`results`: rows {init, split, srocc, plcc, best_epoch}; `summary`: rows
{init, srocc, srocc_ci95, plcc, plcc_ci95, n}, mean and 95% t-interval over splits),
`summary.md` (also printed), `srocc_by_init.png` and `splits.json`. Running it again on the
same workdir resumes every part.
"""

import copy
import os
import time

import ml_collections
import numpy as np

from metaiqa_jax import checkpoints, configlib, metrics, models
from metaiqa_jax.baselines import sharpness
from metaiqa_jax.data import base
from metaiqa_jax.train import (common, defaults, finetuning, pretraining, reporting,
                               setup)

INITS = ('scratch', 'multitask', 'meta')


def pretrained_runs(config, workdir) -> dict[str, str]:
  """Run directories of the pretrained initialisations: reused from the config, else trained
  now on the whole synthetic bank in `workdir/pretrain/`."""
  given = {'meta': config.transfer.meta_workdir,
           'multitask': config.transfer.multitask_workdir}
  needed = [m for m in pretraining.METHODS if m in config.transfer.inits]
  if all(given[m] for m in needed):
    return {m: given[m] for m in needed}
  bank = setup.meta_source(config.data)
  trained = pretraining.pretrain(config, os.path.join(os.fspath(workdir), 'pretrain'), bank)
  return {m: given[m] or trained[m] for m in needed}


def whole_dataset_split(n: int, val_fraction: float, seed: int) -> dict:
  """All `n` records for training except a seeded `val_fraction` for epoch selection; no test."""
  order = np.random.default_rng([seed, 7]).permutation(n)
  n_val = max(1, round(n * val_fraction))
  return {'train': np.sort(order[n_val:]), 'val': np.sort(order[:n_val]),
          'test': np.zeros(0, np.int64)}


def sharpness_rows(source, all_splits) -> list[dict]:
  """The sharpness baseline on every split's test part: rows {init: 'sharpness', split, srocc,
  plcc}; PLCC is of log(1 + variance), SROCC is the same either way."""
  scores = np.log1p(sharpness.sharpness_scores(source[int(i)]['image']
                                               for i in range(len(source))))
  mos = np.asarray(source.metadata()['mos_norm'], np.float64)
  return [{'init': 'sharpness', 'split': k, 'srocc': metrics.srocc(scores[s['test']],
                                                                     mos[s['test']]),
           'plcc': metrics.plcc(scores[s['test']], mos[s['test']])}
          for k, s in enumerate(all_splits)]


def transfer(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Runs (or resumes) the experiment; returns the report also written to report.json.

  Args:
    config: a validated config (`configs/transfer_livec.py` layout).
    workdir: where everything goes (see the module docstring).
    source: optional prebuilt fine-tuning dataset (tests); default `setup.finetune_source`.
  """
  defaults.validate(config)
  unknown = set(config.transfer.inits) - set(INITS)
  if unknown or not config.transfer.inits:
    raise configlib.ConfigError(f'config.transfer.inits must be a non-empty subset of {INITS};'
                                f' got {tuple(config.transfer.inits)}')
  started = time.time()
  workdir = os.fspath(checkpoints.ensure_writable(workdir))
  source = setup.finetune_source(config.finetune) if source is None else source
  if config.data.verify_images:
    base.verify_source(source)
  runs = pretrained_runs(config, workdir)
  model = common.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  all_splits = setup.load_or_make_splits(config.finetune, source, workdir, config.seed)
  rows, finals = [], {}
  for init in config.transfer.inits:
    init_config = copy.deepcopy(config)
    init_config.model.init = runs.get(init, '')
    for k, split in enumerate(all_splits):
      result = finetuning.finetune_split(
          init_config, source, split, k, os.path.join(workdir, 'finetune', init, f'split_{k}'),
          model, apply_fn, desc=f'{init}: split {k + 1}/{len(all_splits)}')
      rows.append({'init': init, 'split': k, 'srocc': result['test']['srocc'],
                   'plcc': result['test']['plcc'], 'best_epoch': result['best_epoch']})
    final = whole_dataset_split(len(source), config.finetune.val_fraction, config.seed)
    result = finetuning.finetune_split(init_config, source, final, len(all_splits),
                                     os.path.join(workdir, 'final', init), model, apply_fn,
                                     desc=f'{init}: all images')
    finals[init] = {'dir': os.path.join(workdir, 'final', init), 'val': result['val'],
                    'best_epoch': result['best_epoch']}
  rows += sharpness_rows(source, all_splits)
  summary = metrics.summarise(rows, ('init',))
  order = list(config.transfer.inits) + ['sharpness']
  summary.sort(key=lambda r: order.index(r['init']))
  name = getattr(source, 'dataset', config.finetune.source)
  reporting.plot_intervals(os.path.join(workdir, 'srocc_by_init.png'),
                           [r['init'] for r in summary], [r['srocc'] for r in summary],
                           [r['srocc_ci95'] for r in summary], 'test SROCC (mean ± 95% CI)',
                           title=f'{name}: {len(all_splits)} splits')
  wall = time.time() - started
  report = {'program': 'transfer', 'source': config.finetune.source, 'root': config.finetune.root,
            'images': len(source), 'results': rows, 'summary': summary, 'final': finals,
            'pretrained': runs, 'wall_time_s': wall, 'machine': common.machine(),
            'config': config.to_dict()}
  markdown = summary_markdown(report)
  reporting.write_outputs(workdir, report, markdown)
  print(f'\n{name} ({len(source)} images): {markdown}\n({wall:.0f} s)')
  return report


def summary_markdown(report: dict) -> str:
  """The summary table from a transfer report, as printed, written to summary.md and pasted
  into the README (`launch/readme_tables.py`)."""
  n_splits = report['config']['finetune']['n_splits']
  table = reporting.interval_table(report['summary'], ['init'])
  return (f'test SROCC / PLCC, mean ± 95% t-interval over {n_splits} random 80/20 splits '
          f'(epoch chosen on a validation part of train):\n\n{table}')

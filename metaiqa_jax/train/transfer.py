"""Transfer to authentic distortions: what do ImageNet weights and synthetic pretraining give
on a human-rated dataset?

`transfer(config, workdir)` is what `metaiqa-transfer` runs (default config:
`configs/transfer_livec.py`). Rows (`transfer.inits`, then two baselines):

  scratch               random initialisation, fine-tuned;
  imagenet              the backbone's ImageNet weights (`model.init = 'imagenet'`), fine-tuned
                        (the paper's "w/o meta" baseline);
  [imagenet+]multitask  multitask regression on the synthetic bank from `config.model.init`
                        (ImageNet for the `imagenet+` rows), then fine-tuned;
  [imagenet+]meta       meta-training on the synthetic bank from the same start, then fine-tuned
                        (the paper's MetaIQA);
  probe                 no training: what the head reads of the frozen ImageNet backbone (for
                        the default model its feature statistics) and a ridge regression
                        (`baselines.probe`; backbones with ImageNet weights only);
  sharpness             the variance of the Laplacian (`baselines.sharpness`).

1. Pretraining: meta-training and multitask training on the whole synthetic bank
   (`pretraining.pretrain`, in `workdir/pretrain/`), unless `transfer.meta_workdir` /
   `transfer.multitask_workdir` name finished runs to reuse.
2. Fine-tuning: each init is fine-tuned on the same `finetune.n_splits` seeded train/val/test
   splits of `finetune.source` under `finetune.root` (`finetuning.finetune_split`: the epoch is
   chosen on the val part of train, never on test). The probe is fitted on train and val, the
   baselines are scored on the same test parts.
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
import dataclasses
import os
import time

import ml_collections
import numpy as np

from metaiqa_jax import configlib, metrics, models
from metaiqa_jax.baselines import probe, sharpness
from metaiqa_jax.weights import imagenet
from metaiqa_jax.train import finetuning, frozen_trunk, pretraining, reporting, setup

INITS = ('scratch', 'imagenet', 'multitask', 'meta', 'imagenet+multitask', 'imagenet+meta')
BASELINES = ('probe', 'sharpness')


def pretraining_method(init: str) -> str | None:
  """'meta' or 'multitask' for a pretrained row ('imagenet+meta' -> 'meta'), else None."""
  method = init.rpartition('+')[2]
  return method if method in pretraining.METHODS else None


def check_inits(config) -> None:
  """`transfer.inits` is a non-empty subset of `INITS` whose pretrained rows start from
  `model.init` ('imagenet+...' rows from 'imagenet', the others from random weights).

  Raises:
    configlib.ConfigError: naming the rows and the setting that contradicts them.
  """
  inits = tuple(config.transfer.inits)
  unknown = set(inits) - set(INITS)
  if unknown or not inits:
    raise configlib.ConfigError(f'config.transfer.inits must be a non-empty subset of {INITS};'
                                f' got {inits}')
  start = 'imagenet+' if config.model.init == imagenet.IMAGENET else ''
  wrong = [i for i in inits if pretraining_method(i) and not i == start + pretraining_method(i)]
  if wrong:
    raise configlib.ConfigError(
        f'config.transfer.inits {wrong}: pretraining starts from config.model.init = '
        f'{config.model.init!r}, so its rows are named '
        f"{[start + m for m in pretraining.METHODS]}")


def pretrained_runs(config, workdir) -> dict[str, str]:
  """Run directories of the pretrained initialisations ({'meta': dir, 'multitask': dir} for
  those the rows need): reused from the config, else trained now on the whole synthetic bank
  in `workdir/pretrain/`."""
  given = {'meta': config.transfer.meta_workdir,
           'multitask': config.transfer.multitask_workdir}
  needed = [m for m in pretraining.METHODS
            if m in map(pretraining_method, config.transfer.inits)]
  if all(given[m] for m in needed):
    return {m: given[m] for m in needed}
  bank = setup.meta_source(config.data)
  trained = pretraining.pretrain(config, os.path.join(os.fspath(workdir), 'pretrain'), bank)
  return {m: given[m] or trained[m] for m in needed}


def row_init(init: str, runs: dict[str, str]) -> str:
  """The `model.init` a row fine-tunes from: '' (scratch), 'imagenet', or a pretrained run."""
  method = pretraining_method(init)
  return runs[method] if method else {'scratch': '', 'imagenet': imagenet.IMAGENET}[init]


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


def probe_rows(config, source, all_splits, features: frozen_trunk.FeatureCache) -> list[dict]:
  """The frozen ImageNet probe (`baselines.probe`) on every split: what the head reads of the
  ImageNet backbone (`features` of the model with `imagenet.imagenet_variables`), averaged over
  each image's evaluation views, fitted by ridge regression on the train and val parts, scored
  on test; rows {init: 'probe', split, srocc, plcc}. [] for a backbone without ImageNet
  weights to install, as for ResNets."""
  if models.BACKBONES[config.model.arch].imagenet_wheel is None:
    return []
  variables = imagenet.imagenet_variables(features.model)
  views = features(variables, np.arange(len(source))).mean(axis=1)
  mos = np.asarray(source.metadata()['mos_norm'], np.float64)
  rows = []
  for k, split in enumerate(all_splits):
    fit = np.concatenate([split['train'], split['val']])
    ridge = probe.Ridge.fit(views[fit], mos[fit], config.transfer.probe_lambda)
    pred = ridge.predict(views[split['test']])
    rows.append({'init': 'probe', 'split': k, 'srocc': metrics.srocc(pred, mos[split['test']]),
                 'plcc': metrics.plcc(pred, mos[split['test']])})
  return rows


def transfer(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Runs (or resumes) the experiment; returns the report also written to report.json.

  Args:
    config: a validated config (`configs/transfer_livec.py` layout).
    workdir: where everything goes (see the module docstring).
    source: optional prebuilt fine-tuning dataset (tests); default `setup.finetune_source`.
  """
  started = time.time()
  check_inits(config)
  run = setup.finetune_run(config, workdir, source=source, verify=True)
  workdir, source = os.fspath(run.workdir), run.source
  runs = pretrained_runs(config, workdir)
  features = frozen_trunk.FeatureCache(run.model, source, run.inputs,
                                       batch_size=config.finetune.eval_batch_size)
  all_splits = setup.load_or_make_splits(config.finetune, source, workdir, config.seed)
  rows, finals = [], {}
  for init in config.transfer.inits:
    init_config = copy.deepcopy(config)
    init_config.model.init = row_init(init, runs)
    init_run = dataclasses.replace(run, config=init_config)
    for k, split in enumerate(all_splits):
      result = finetuning.finetune_split(
          init_run, split, k, os.path.join(workdir, 'finetune', init, f'split_{k}'),
          desc=f'{init}: split {k + 1}/{len(all_splits)}', features=features)
      rows.append({'init': init, 'split': k, 'srocc': result['test']['srocc'],
                   'plcc': result['test']['plcc'], 'best_epoch': result['best_epoch']})
    final = whole_dataset_split(len(source), config.finetune.val_fraction, config.seed)
    result = finetuning.finetune_split(init_run, final, len(all_splits),
                                       os.path.join(workdir, 'final', init),
                                       desc=f'{init}: all images', features=features)
    finals[init] = {'dir': os.path.join(workdir, 'final', init), 'val': result['val'],
                    'best_epoch': result['best_epoch']}
  rows += probe_rows(config, source, all_splits, features) + sharpness_rows(source, all_splits)
  summary = metrics.summarise(rows, ('init',))
  order = list(config.transfer.inits) + list(BASELINES)
  summary.sort(key=lambda r: order.index(r['init']))
  name = getattr(source, 'dataset', config.finetune.source)
  reporting.plot_intervals(os.path.join(workdir, 'srocc_by_init.png'),
                           [r['init'] for r in summary], [r['srocc'] for r in summary],
                           [r['srocc_ci95'] for r in summary], 'test SROCC (mean ± 95% CI)',
                           title=f'{name}: {len(all_splits)} splits')
  wall = time.time() - started
  report = {'program': 'transfer', 'source': config.finetune.source, 'root': config.finetune.root,
            'images': len(source), 'results': rows, 'summary': summary, 'final': finals,
            'pretrained': runs, 'wall_time_s': wall, 'machine': reporting.machine(),
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

"""Fine-tuning on an authentic-distortion dataset over N train/val/test splits.

`finetune(config, workdir)` is what `metaiqa-finetune` runs. For each split it trains the model
(`config.model.init`: usually a meta-trained checkpoint) on `train`, evaluates `val` after every
epoch, keeps the checkpoint with the best val SROCC, and reports that checkpoint's `test`
metrics: model selection never looks at test (the authors' script picked the best test epoch).
Layout: `workdir/splits.json` (made once, reused), `workdir/split_<k>/` (checkpoints, logs,
report), `workdir/report.json` (per split + mean/std/median), `workdir/scatter_split<k>.png`.
A run started again resumes every split from its last finished epoch.
"""

import logging
import os
from typing import Optional

import jax
import ml_collections
import numpy as np
import optax

from metaiqa_jax import checkpoints, configlib, meta, metrics, models
from metaiqa_jax.data import base, pipeline, splits
from metaiqa_jax.train import common, defaults, evaluation, reporting, supervised


def build_source(ft_config: ml_collections.ConfigDict):
  """The fine-tuning dataset named by `config.finetune.source` under `config.finetune.root`
  (with `config.finetune.csv_path` as the label table of 'csv' and 'cid2013')."""
  if ft_config.source == 'csv' and not ft_config.csv_path:
    raise configlib.ConfigError("config.finetune.source 'csv' needs config.finetune.csv_path (the "
                                'label table; config.finetune.root is the image folder)')
  kwargs = {'csv_path': ft_config.csv_path} if ft_config.csv_path else {}
  return common.open_source(ft_config.source, ft_config.root, 'config.finetune.source', **kwargs)


def stated_splits(ft_config, source, path: str) -> Optional[list]:
  """The splits a config states, checked against `source`: with `finetune.split_file` =
  'official' the dataset's own (`source.official_splits()`, e.g. KonIQ-10k's `set` column: one
  split); otherwise those saved at `path` by `splits.save_splits`, or None if it does not exist.

  Raises:
    configlib.ConfigError: 'official' for a source without a split of its own; a split file that
      does not read or refers to records the source does not have.
  """
  if ft_config.split_file == defaults.OFFICIAL_SPLIT:
    official = getattr(source, 'official_splits', lambda: None)()
    if official is None:
      raise configlib.ConfigError(
          f"finetune.split_file = '{defaults.OFFICIAL_SPLIT}' asks for the dataset's own split, "
          f'but finetune.source = {ft_config.source!r} ({source!r}) has none; only koniq10k '
          'read from koniq10k_distributions_sets.csv has one. Set finetune.split_file to a '
          "splits file, or to '' for random splits")
    return official
  if not os.path.exists(path):
    return None
  try:
    loaded = splits.load_splits(path)
  except (ValueError, KeyError, TypeError) as e:
    raise configlib.ConfigError(f'split file {path} does not read: {e!r}') from e
  n = len(source)
  for k, split in enumerate(loaded):
    top = max(int(np.max(part, initial=-1)) for part in split.values())
    if top >= n:
      raise configlib.ConfigError(f'{path}: split {k} refers to record {top}, but '
                                  f'finetune.source {ft_config.source!r} has {n}')
  return loaded


def load_or_make_splits(ft_config, source, workdir, seed: int) -> list:
  """The splits to fine-tune on, by `finetune.split_file`:

    'official'  the dataset's own split (see `stated_splits`), also written to
                `workdir/splits.json` as a record;
    a path      splits written by `splits.save_splits` (made and saved there if missing);
    ''          `workdir/splits.json` if present, else `n_splits` new random splits (saved).

  Raises:
    configlib.ConfigError: see `stated_splits`.
  """
  workdir_file = os.path.join(os.fspath(workdir), 'splits.json')
  official = ft_config.split_file == defaults.OFFICIAL_SPLIT
  path = workdir_file if official or not ft_config.split_file else ft_config.split_file
  chosen = stated_splits(ft_config, source, path)
  if chosen is not None and not official:
    return chosen
  if chosen is None:
    chosen = splits.make_splits(source.metadata(), ft_config.n_splits,
                                test_fraction=ft_config.test_fraction,
                                val_fraction=ft_config.val_fraction, seed=seed)
  if jax.process_index() == 0:
    splits.save_splits(path, chosen)
  return chosen


def lr_schedule(ft_config, steps_per_epoch: int) -> optax.Schedule:
  """`step -> factor` of both fine-tuning learning rates: 'step' (x decay_rate every
  decay_epochs, the paper's) or 'cosine' (to 0 over all epochs)."""
  if ft_config.schedule == 'cosine':
    return optax.cosine_decay_schedule(1.0, ft_config.epochs * steps_per_epoch)
  return optax.exponential_decay(1.0, ft_config.decay_epochs * steps_per_epoch,
                                 ft_config.decay_rate, staircase=True)


def finetune_split(config, source, split: dict, k: int, split_dir, model, apply_fn, *,
                   desc: str = '') -> dict:
  """Trains on `split['train']`, selects the epoch on `split['val']`, returns the chosen
  checkpoint's val and test metrics (`test` None when `split['test']` is empty).

  `k` seeds the run (initialisation, data order); `split_dir` receives its checkpoints, logs
  and the selected weights; `desc` labels the progress bar.
  """
  ft = config.finetune
  split_dir = checkpoints.ensure_writable(split_dir)
  batch_size = min(ft.batch_size, len(split['train']))
  steps_per_epoch = len(split['train']) * ft.crops_per_image // batch_size
  schedule = lr_schedule(ft, steps_per_epoch)
  tx = meta.make_outer_optimizer(lr=ft.lr, head_lr=ft.head_lr, schedule=schedule)
  variables = common.initial_variables(model, config.model.init,
                                       jax.random.key(config.seed + k), config.data.image_size)
  state = meta.init_meta_state(variables, tx)
  ckpt = checkpoints.Checkpointer(split_dir, model_config=models.model_config(model),
                                  inputs=common.input_spec(config.data),
                                  written_by=common.provenance('finetune', config),
                                  keep_latest=1, keep_best=1, best_metric='val_srocc')
  restored = ckpt.restore_latest(state)
  start_epoch = 0
  if restored is not None:
    _, state, saved = restored
    start_epoch = saved['extra']['epoch']
  run_log = reporting.RunLogger(split_dir, is_primary=jax.process_index() == 0,
                                resume_step=int(state.step) if restored is not None else None,
                                last_checkpoint=ckpt.last_complete_step)
  train_step = supervised.make_train_step(apply_fn, tx)
  predict = supervised.make_predict(apply_fn)
  rng = jax.random.key(config.seed * 1000 + k)
  bar = reporting.progress_bar(ft.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
                               desc=desc or f'fine-tune split {k}')
  for epoch in range(start_epoch, ft.epochs):
    loader = pipeline.make_loader(source, split['train'], batch_size=batch_size,
                                  inputs=common.input_spec(config.data), train=True,
                                  seed=config.seed * 100003 + k * 1009 + epoch,
                                  num_epochs=ft.crops_per_image,
                                  worker_count=config.data.worker_count)
    for batch in loader:
      state, step_metrics = train_step(state, batch['image'], batch['mos_norm'],
                                       jax.random.fold_in(rng, state.step))
      bar.update(1)
    loss = float(step_metrics['loss'])
    if not np.isfinite(loss):
      ckpt.wait_until_finished()
      raise common.NonFiniteLossError(f'fine-tuning split {k}, epoch {epoch + 1}: loss is {loss}; '
                                      f'the last good checkpoint is in {ckpt.directory}')
    val, _, _ = evaluation.evaluate_indices(
        predict, {'params': state.params, 'batch_stats': state.batch_stats}, source,
        split['val'], config)
    reporting.show_metrics(bar, {'loss': loss, 'val_srocc': val['srocc']})
    run_log.log(int(state.step), 'train', step_metrics)
    run_log.log(int(state.step), 'val', val)
    ckpt.save(epoch + 1, state, metrics={'val_srocc': val['srocc']},
              extra_json={'epoch': epoch + 1})
  bar.close()
  ckpt.wait_until_finished()
  best_epoch = ckpt.best_step()
  _, best = checkpoints.restore_variables(split_dir)
  val, _, _ = evaluation.evaluate_indices(predict, best, source, split['val'], config)
  result = {'split': k, 'best_epoch': best_epoch, 'val': val, 'test': None}
  if len(split['test']):
    test, preds, mos = evaluation.evaluate_indices(predict, best, source, split['test'], config)
    run_log.log(int(state.step), 'test', test)
    result |= {'test': test, 'predictions': preds.tolist(), 'mos_norm': mos.tolist()}
  run_log.close()
  ckpt.close()
  return result


def finetune(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Fine-tunes on every selected split; returns the report also written to report.json."""
  defaults.validate(config)
  workdir = checkpoints.ensure_writable(workdir)
  common.maybe_initialize_distributed(config.distributed)
  model = common.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  source = build_source(config.finetune) if source is None else source
  if config.data.verify_images:
    base.verify_source(source)
  all_splits = load_or_make_splits(config.finetune, source, workdir, config.seed)
  selected = list(config.finetune.splits) or list(range(len(all_splits)))
  results = []
  for k in selected:
    if not 0 <= k < len(all_splits):
      raise ValueError(f'config.finetune.splits asks for split {k}; there are '
                       f'{len(all_splits)}')
    result = finetune_split(config, source, all_splits[k], k,
                            os.path.join(os.fspath(workdir), f'split_{k}'), model, apply_fn)
    logging.info('split %d: test SROCC %.4f PLCC %.4f (best val epoch %s)', k,
                 result['test']['srocc'], result['test']['plcc'], result['best_epoch'])
    results.append(result)
  summary = metrics.aggregate([r['test'] for r in results])
  first = results[0]
  if jax.process_index() == 0:
    reporting.plot_scatter(
        os.path.join(os.fspath(workdir), f'scatter_split{first["split"]}.png'),
        first['predictions'], first['mos_norm'], first['test']['logistic'],
        title=f'{config.finetune.source}: test split {first["split"]}')
  report = {'program': 'finetune', 'source': config.finetune.source, 'splits': results,
            'test_summary': summary, 'config': config.to_dict()}
  if jax.process_index() == 0:
    reporting.write_report(workdir, report)
  return report

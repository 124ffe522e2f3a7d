"""Fine-tuning one split: train on its `train` part, choose the epoch on `val`, score `test`.

Shared by `finetune` (N splits of one dataset) and `transfer` (several initialisations on the same
splits, then on all images).
"""

import contextlib

import jax
import numpy as np
import optax

from metaiqa_jax import checkpoints, meta, models, optim, parallel
from metaiqa_jax.data import pipeline
from metaiqa_jax.train import common, evaluation, loop, reporting, supervised


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
  # A batch is split over all devices: at most ft.batch_size images, a multiple of the devices.
  devices = jax.device_count()
  batch_size = min(ft.batch_size, len(split['train'])) // devices * devices
  if not batch_size:
    raise ValueError(f'fine-tuning split {k} has {len(split["train"])} training images, fewer '
                     f'than the {devices} devices a batch is split over')
  steps_per_epoch = len(split['train']) * ft.crops_per_image // batch_size
  schedule = lr_schedule(ft, steps_per_epoch)
  tx = optim.make_optimizer(lr=ft.lr, head_lr=ft.head_lr, schedule=schedule)
  variables = common.initial_variables(model, config.model.init,
                                       jax.random.key(config.seed + k), config.data.image_size)
  state = meta.init_meta_state(variables, tx)
  train_step = supervised.make_train_step(apply_fn, tx)
  predict = supervised.make_predict(apply_fn)
  rng = jax.random.key(config.seed * 1000 + k)
  primary = jax.process_index() == 0
  with contextlib.ExitStack() as open_files:  # Closed however the split ends.
    ckpt = open_files.enter_context(checkpoints.Checkpointer(
        split_dir, model_config=models.model_config(model), inputs=common.input_spec(config.data),
        written_by=common.provenance('finetune', config), keep_latest=1, keep_best=1,
        best_metric='val_srocc'))
    restored = ckpt.restore_latest(state)
    start_epoch = 0
    if restored is not None:
      _, state, saved = restored
      start_epoch = saved['extra']['epoch']
    run_log = open_files.enter_context(reporting.RunLogger(
        split_dir, is_primary=primary,
        resume_step=int(state.step) if restored is not None else None,
        last_checkpoint=ckpt.last_complete_step))
    sigterm = open_files.enter_context(loop.sigterm_requests())
    bar = open_files.enter_context(reporting.progress_bar(
        ft.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
        desc=desc or f'fine-tune split {k}', enabled=primary))
    for epoch in range(start_epoch, ft.epochs):
      loader = pipeline.make_loader(source, split['train'], batch_size=batch_size,
                                    inputs=common.input_spec(config.data), train=True,
                                    seed=config.seed * 100003 + k * 1009 + epoch,
                                    num_epochs=ft.crops_per_image,
                                    worker_count=config.data.worker_count,
                                    shard=(jax.process_index(), jax.process_count()))
      for batch in loader:
        state, step_metrics = train_step(state, batch['image'], batch['mos_norm'],
                                         jax.random.fold_in(rng, state.step))
        bar.update(1)
        if parallel.any_process(bool(sigterm)):
          # An epoch's data order depends on the epoch alone: the run resumes from the last
          # finished epoch and repeats exactly what this one would have done.
          ckpt.wait_until_finished()
          raise common.Preempted(
              f'SIGTERM received: fine-tuning split {k} stopped during epoch {epoch + 1}; '
              f'its last checkpoint is epoch {epoch} in {ckpt.directory}, from which the same '
              f'command resumes')
      loss = float(step_metrics['loss'])
      if not np.isfinite(loss):
        ckpt.wait_until_finished()
        raise common.NonFiniteLossError(f'fine-tuning split {k}, epoch {epoch + 1}: loss is '
                                        f'{loss}; the last good checkpoint is in '
                                        f'{ckpt.directory}')
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
      test, preds, mos = evaluation.evaluate_indices(predict, best, source, split['test'],
                                                     config)
      run_log.log(int(state.step), 'test', test)
      result |= {'test': test, 'predictions': preds.tolist(), 'mos_norm': mos.tolist()}
  return result

"""The paper's baseline: multitask pretraining on the meta-training types, no inner loop.

`multitask_train(config, workdir, source=...)` fits the quality regressor to the same images the
meta-learner sees: step s uses every support and query image of meta-batch s of the same
`TaskSampler` (so both methods get the same data, the same number of gradient steps and the same
outer optimiser), pooled into one regression batch. Checkpoints, logs and resume work as in
`meta_train`.
"""

import math

import jax
import ml_collections
import numpy as np

from metaiqa_jax import checkpoints, meta, models
from metaiqa_jax.train import common, defaults, meta_train, reporting, supervised


def pooled_batch(tasks) -> tuple[np.ndarray, np.ndarray]:
  """Support and query images of all tasks as one batch: x (T*(S+Q), H, W, 3), y (T*(S+Q),)."""
  (sx, sy), (qx, qy) = tasks['support'], tasks['query']
  x = np.concatenate([sx.reshape((-1,) + sx.shape[2:]), qx.reshape((-1,) + qx.shape[2:])])
  return x, np.concatenate([sy.reshape(-1), qy.reshape(-1)])


def multitask_train(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Runs (or resumes) multitask pretraining; returns the report written to report.json.

  Validation is the same meta-validation as `meta_train` (adapt to each validation task with
  `meta.inner_steps` inner steps, score its query set), so the two are comparable.
  """
  defaults.validate(config)
  workdir = checkpoints.ensure_writable(workdir)
  model = common.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  source = meta_train.build_source(config.data) if source is None else source
  train_sampler, val_sampler = meta_train.make_samplers(config, source)
  tx = meta.make_outer_optimizer(lr=config.optim.lr, head_lr=config.optim.head_lr,
                                 schedule=meta_train.outer_schedule(config.optim))
  variables = common.initial_variables(model, config.model.init, jax.random.key(config.seed),
                                       config.data.image_size)
  state = meta.init_meta_state(variables, tx)
  ckpt = checkpoints.Checkpointer(workdir, model_config=models.model_config(model),
                                  keep_latest=config.keep_checkpoints,
                                  keep_best=config.keep_best, best_metric='val_srocc')
  restored = ckpt.restore_latest(state)
  start = 0
  if restored is not None:
    start, state, _ = restored
  run_log = reporting.RunLogger(workdir, resume_step=start if restored is not None else None)
  train_step = supervised.make_train_step(apply_fn, tx)
  validate = meta_train.make_validator(config, apply_fn, val_sampler)
  rng = jax.random.key(config.seed)
  val, history = None, []
  bar = reporting.progress_bar(config.num_steps, initial=start, desc='multitask')
  for step in range(start, config.num_steps):
    x, y = pooled_batch(train_sampler.sample(step))
    state, step_metrics = train_step(state, x, y, jax.random.fold_in(rng, step))
    done = step + 1
    loss = float(step_metrics['loss'])
    if not math.isfinite(loss):
      ckpt.wait_until_finished()
      raise meta_train.NonFiniteLossError(
          f'multitask step {done}: loss is {loss}; stopping. Last good checkpoints: '
          f'{ckpt.all_steps()} in {ckpt.directory}')
    bar.update(1)
    reporting.show_metrics(bar, {'loss': loss})
    if done % config.log_every == 0 or done == config.num_steps:
      run_log.log(done, 'train', step_metrics)
    if done % config.eval_every == 0 or done == config.num_steps:
      val = validate(state)
      run_log.log(done, 'val', val)
      history.append({'step': done, **val})
    if done % config.checkpoint_every == 0 or done == config.num_steps:
      ckpt.save(done, state, metrics={'val_srocc': val['srocc']} if val else None)
  bar.close()
  ckpt.wait_until_finished()
  report = {'program': 'multitask_train', 'steps': config.num_steps,
            'final_val': val if val is not None else validate(state), 'val_history': history,
            'train_types': list(train_sampler.types), 'config': config.to_dict()}
  reporting.write_report(workdir, report)
  run_log.close()
  ckpt.close()
  return report

"""The paper's baseline: multitask pretraining on the meta-training types, no inner loop.

`multitask_train(config, workdir, source=...)` fits the quality regressor to the same images the
meta-learner sees: step s uses every support and query image of meta-batch s of the same
`TaskSampler` (so both methods get the same data, the same number of gradient steps and the same
outer optimiser), pooled into one regression batch, of which each process loads the images of
its own tasks (the batch is sharded over all devices). Checkpoints, logs, resume and preemption
work as in `meta_train` (`loop.run_steps`).
"""

import jax
import ml_collections
import numpy as np

from metaiqa_jax import checkpoints, meta, models, optim, parallel
from metaiqa_jax.models import construct
from metaiqa_jax.train import common, defaults, loop, reporting, setup, supervised


def pooled_batch(tasks) -> tuple[np.ndarray, np.ndarray]:
  """Support and query images of the tasks as one batch, task by task (support then query):
  x (T*(S+Q), H, W, 3), y (T*(S+Q),). A contiguous slice of the tasks gives a contiguous slice
  of the batch, so each process's tasks are its share."""
  (sx, sy), (qx, qy) = tasks['support'], tasks['query']
  x = np.concatenate([sx, qx], axis=1)
  return x.reshape((-1,) + x.shape[2:]), np.concatenate([sy, qy], axis=1).reshape(-1)


def multitask_train(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Runs (or resumes) multitask pretraining; returns the report written to report.json.

  Validation is the same meta-validation as `meta_train` (adapt to each validation task with
  `meta.inner_steps` inner steps, score its query set), so the two are comparable.
  """
  defaults.validate(config)
  workdir = checkpoints.ensure_writable(workdir)
  model = construct.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  source = setup.meta_source(config.data) if source is None else source
  train_sampler, val_sampler = setup.make_samplers(config, source)
  tx = optim.make_optimizer(lr=config.optim.lr, head_lr=config.optim.head_lr,
                                 schedule=setup.outer_schedule(config.optim))
  variables = construct.initial_variables(model, config.model.init, jax.random.key(config.seed),
                                       config.data.image_size)
  train_step = supervised.make_train_step(apply_fn, tx)
  rng = jax.random.key(config.seed)

  own_tasks = parallel.process_share(config.meta.tasks_per_batch)
  batches = common.Prefetcher(
      lambda step: pooled_batch(train_sampler.sample(step, tasks=own_tasks)))

  def one_step(state, step):
    x, y = batches.get(step)
    return train_step(state, x, y, jax.random.fold_in(rng, step))

  result = loop.run_steps(config, workdir, model=model, state=meta.init_meta_state(variables, tx),
                          step_fn=one_step,
                          validate=setup.make_validator(config, apply_fn, val_sampler),
                          name='multitask step', writer='multitask_train',
                          primary=jax.process_index() == 0)
  report = {'program': 'multitask_train', 'steps': config.num_steps,
            'final_val': result['final_val'], 'val_history': result['val_history'],
            'best_step': result['best_step'], 'train_types': list(train_sampler.types),
            'config': config.to_dict()}
  reporting.write_report(workdir, report)
  return report

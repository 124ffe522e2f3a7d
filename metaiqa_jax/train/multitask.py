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

from metaiqa_jax import meta, parallel
from metaiqa_jax.data import pipeline
from metaiqa_jax.models import construct
from metaiqa_jax.train import loop, reporting, setup, supervised


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
  run = setup.meta_run(config, workdir, source=source)
  tx = run.outer_optimizer()
  variables = construct.initial_variables(run.model, config.model.init,
                                          jax.random.key(config.seed), config.data.image_size)
  train_step = supervised.make_train_step(run.apply_fn, tx)
  rng = jax.random.key(config.seed)

  own_tasks = parallel.process_share(config.meta.tasks_per_batch)
  batches = pipeline.Prefetcher(
      lambda step: pooled_batch(run.train_sampler.sample(step, tasks=own_tasks)))

  def one_step(state, step):
    x, y = batches.get(step)
    return train_step(state, x, y, jax.random.fold_in(rng, step))

  result = loop.run_steps(config, run.workdir, model=run.model, inputs=run.inputs,
                          state=meta.init_meta_state(variables, tx), step_fn=one_step,
                          validate=run.validate, name='multitask step', writer='multitask_train')
  report = {'program': 'multitask_train', 'steps': config.num_steps,
            'final_val': result['final_val'], 'val_history': result['val_history'],
            'best_step': result['best_step'], 'train_types': list(run.train_sampler.types),
            'config': config.to_dict()}
  reporting.write_report(run.workdir, report)
  return report

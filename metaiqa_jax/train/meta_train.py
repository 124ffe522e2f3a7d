"""Meta-training: the outer loop over distortion-type tasks, with validation and checkpoints.

`meta_train(config, workdir)` is what `metaiqa-meta-train` runs. Everything it writes is in
`workdir`: `checkpoints/` (latest + best by meta-validation SROCC), `metrics.jsonl` and
TensorBoard events, `report.json`. Started again on the same workdir it resumes from the
latest readable checkpoint; meta-batch `s` is a function of (seed, s) only, so the resumed run
sees the same data and gives the same result as an uninterrupted one.

Preemption (SIGTERM, SIGKILL), NaN losses and resuming are handled by `loop.run_steps`.
"""

import jax
import ml_collections

from metaiqa_jax import checkpoints, meta, models, optim, parallel
from metaiqa_jax.data import base
from metaiqa_jax.models import construct
from metaiqa_jax.train import common, defaults, loop, reporting, setup


def meta_train(config: ml_collections.ConfigDict, workdir: str, *,
               source=None) -> dict:
  """Runs (or resumes) meta-training; returns the report also written to workdir/report.json.

  Args:
    config: a validated config (`metaiqa_jax.train.defaults.base_config` layout).
    workdir: where checkpoints, logs and the report go.
    source: optional prebuilt meta-training source (tests, LODO); default `setup.meta_source`.

  Raises:
    common.NonFiniteLossError: the query loss became NaN/Inf; the last good checkpoint is kept.
    common.Preempted: SIGTERM arrived; the state of the last finished step was checkpointed.
    UnreadableImagesError: `config.data.verify_images` found image files that cannot be decoded.
  """
  defaults.validate(config)
  workdir = checkpoints.ensure_writable(workdir)
  common.maybe_initialize_distributed(config.distributed)
  model = construct.build_model(config.model, grad_order=setup.conv_grad_order(config.meta))
  apply_fn = models.make_apply_fn(model)
  source = setup.meta_source(config.data) if source is None else source
  if config.data.verify_images:
    base.verify_source(source)
  train_sampler, val_sampler = setup.make_samplers(config, source)

  lrs = setup.inner_lrs(config.meta)
  tx = optim.make_optimizer(lr=config.optim.lr, head_lr=config.optim.head_lr,
                                 schedule=setup.outer_schedule(config.optim))
  variables = construct.initial_variables(model, config.model.init, jax.random.key(config.seed),
                                       config.data.image_size)
  state = meta.init_meta_state(variables, tx, meta_sgd=config.meta.meta_sgd, inner_lr=lrs)
  step_fn = meta.make_meta_step(
      apply_fn, tx, inner_steps=config.meta.inner_steps, inner_lr=lrs,
      algorithm=config.meta.algorithm, task_map=config.meta.task_map or None,
      adapt=config.meta.adapt, remat=config.meta.remat,
      inner_optimizer=config.meta.inner_optimizer, batch_norm=config.meta.batch_norm)
  task_slice = parallel.process_share(config.meta.tasks_per_batch)
  rng = jax.random.key(config.seed)

  # This process's tasks only; the meta-step assembles every process's share (parallel.put_sharded).
  batches = common.Prefetcher(lambda step: train_sampler.sample(step, tasks=task_slice))

  def one_step(state, step):
    return step_fn(state, batches.get(step), jax.random.fold_in(rng, step))

  result = loop.run_steps(config, workdir, model=model, state=state, step_fn=one_step,
                          validate=setup.make_validator(config, apply_fn, val_sampler),
                          name='meta-step', writer='meta_train', loss_name='query loss',
                          primary=jax.process_index() == 0)
  report = {'program': 'meta_train', 'steps': config.num_steps,
            'final_val': result['final_val'], 'val_history': result['val_history'],
            'best_step': result['best_step'], 'train_types': list(train_sampler.types),
            'config': config.to_dict()}
  reporting.write_report(workdir, report)
  return report

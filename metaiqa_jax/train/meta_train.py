"""Meta-training: the outer loop over distortion-type tasks, with validation and checkpoints.

`meta_train(config, workdir)` is what `metaiqa-meta-train` runs. Everything it writes is in
`workdir`: `checkpoints/` (latest + best by meta-validation SROCC), `metrics.jsonl` and
TensorBoard events, `report.json`. Started again on the same workdir it resumes from the
latest readable checkpoint; meta-batch `s` is a function of (seed, s) only, so the resumed run
sees the same data and gives the same result as an uninterrupted one.

Preemption (SIGTERM, SIGKILL), NaN losses and resuming are handled by `loop.run_steps`.
"""

from typing import Optional

import jax
import ml_collections
import numpy as np
import optax

from metaiqa_jax import checkpoints, meta, models
from metaiqa_jax.data import base, splits, tasks, views
from metaiqa_jax.train import common, defaults, evaluation, loop, reporting


def build_source(data_config: ml_collections.ConfigDict):
  """The meta-training source: `data.sources` with their `data.roots`, concatenated
  (`views.Concat` numbers the k-th source's types from k * 100 + 1)."""
  if len(data_config.roots) != len(data_config.sources):
    raise ValueError(f'config.data.roots has {len(data_config.roots)} entries for '
                     f'{len(data_config.sources)} config.data.sources')
  built = []
  for name, root in zip(data_config.sources, data_config.roots):
    kwargs = ({'max_side': data_config.synthetic_max_side,
               'workers': data_config.synthetic_workers} if name == 'synthetic' else {})
    built.append(common.open_source(name, root, 'config.data.sources', **kwargs))
  return built[0] if len(built) == 1 else views.Concat(built)


def task_types(metadata, held_out) -> list[int]:
  """Distortion types of the source minus `held_out` (error on an unknown held-out type)."""
  present = sorted(int(t) for t in np.unique(metadata['dist_type']) if t >= 0)
  unknown = sorted(set(held_out) - set(present))
  if unknown:
    raise ValueError(f'held-out types {unknown} are not in the data (types: {present})')
  return [t for t in present if t not in set(held_out)]


def inner_lrs(meta_config) -> dict:
  """Per-group inner learning rates: backbone and head, as the authors' code."""
  return {'backbone': meta_config.inner_lr, 'head': meta_config.inner_lr_head}


def outer_schedule(optim_config) -> Optional[optax.Schedule]:
  """A `step -> factor` schedule for both outer learning rates (None = constant)."""
  warmup = optim_config.warmup_steps
  if optim_config.schedule == 'constant':
    decay = optax.constant_schedule(1.0)
  elif optim_config.schedule == 'step':
    decay = optax.exponential_decay(1.0, optim_config.decay_steps, optim_config.decay_rate,
                                    staircase=True)
  elif optim_config.schedule == 'cosine':
    decay = optax.cosine_decay_schedule(1.0, optim_config.decay_steps)
  else:
    raise ValueError(f"config.optim.schedule must be 'constant', 'step' or 'cosine'; got "
                     f'{optim_config.schedule!r}')
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), decay], [warmup])
  return None if optim_config.schedule == 'constant' else decay


def make_samplers(config, source):
  """Training and validation `TaskSampler`s, disjoint by reference content."""
  metadata = source.metadata()
  types = task_types(metadata, config.data.held_out_types)
  split = splits.make_splits(metadata, 1, test_fraction=config.data.val_fraction,
                             val_fraction=0.0, seed=config.seed)[0]
  shared = dict(types=types, support_size=config.meta.support_size,
                query_size=config.meta.query_size, tasks_per_batch=config.meta.tasks_per_batch,
                inputs=common.input_spec(config.data))
  train = tasks.TaskSampler(views.Subset(source, split['train']), seed=config.seed, train=True,
                            **shared)
  val = tasks.TaskSampler(views.Subset(source, split['test']), seed=config.seed + 1,
                          train=False, **shared)
  return train, val


def make_validator(config, apply_fn, val_sampler):
  """`validate(state) -> metrics`: meta-validation of a train state (adapt with the configured
  inner loop to each validation task, score its query set; `evaluation.meta_validate`)."""
  adapt_predict = evaluation.make_adapt_predict(
      apply_fn, steps=config.meta.inner_steps, adapt=config.meta.adapt,
      inner_optimizer=config.meta.inner_optimizer, batch_norm=config.meta.batch_norm)
  lrs = inner_lrs(config.meta)

  def validate(state):
    lr = state.inner_lr if state.inner_lr is not None else lrs
    return evaluation.meta_validate(adapt_predict, lr, {'params': state.params,
                                                        'batch_stats': state.batch_stats},
                                    val_sampler, config.eval_tasks, seed=config.seed)
  return validate


def meta_train(config: ml_collections.ConfigDict, workdir: str, *,
               source=None) -> dict:
  """Runs (or resumes) meta-training; returns the report also written to workdir/report.json.

  Args:
    config: a validated config (`metaiqa_jax.train.defaults.base_config` layout).
    workdir: where checkpoints, logs and the report go.
    source: optional prebuilt meta-training source (tests, LODO); default `build_source`.

  Raises:
    common.NonFiniteLossError: the query loss became NaN/Inf; the last good checkpoint is kept.
    common.Preempted: SIGTERM arrived; the state of the last finished step was checkpointed.
    UnreadableImagesError: `config.data.verify_images` found image files that cannot be decoded.
  """
  defaults.validate(config)
  workdir = checkpoints.ensure_writable(workdir)
  common.maybe_initialize_distributed(config.distributed)
  primary = jax.process_index() == 0
  model = common.build_model(config.model)
  apply_fn = models.make_apply_fn(model)
  source = build_source(config.data) if source is None else source
  if config.data.verify_images:
    base.verify_source(source)
  train_sampler, val_sampler = make_samplers(config, source)

  lrs = inner_lrs(config.meta)
  tx = meta.make_outer_optimizer(lr=config.optim.lr, head_lr=config.optim.head_lr,
                                 schedule=outer_schedule(config.optim))
  variables = common.initial_variables(model, config.model.init, jax.random.key(config.seed),
                                       config.data.image_size)
  state = meta.init_meta_state(variables, tx, meta_sgd=config.meta.meta_sgd, inner_lr=lrs)
  step_fn = meta.make_meta_step(
      apply_fn, tx, inner_steps=config.meta.inner_steps, inner_lr=lrs,
      algorithm=config.meta.algorithm, task_map=config.meta.task_map or None,
      adapt=config.meta.adapt, remat=config.meta.remat,
      inner_optimizer=config.meta.inner_optimizer, batch_norm=config.meta.batch_norm)
  task_slice = common.process_slice(config.meta.tasks_per_batch)
  rng = jax.random.key(config.seed)

  batches = common.Prefetcher(train_sampler.sample)

  def one_step(state, step):
    batch = jax.tree.map(lambda a: a[task_slice], batches.get(step))
    return step_fn(state, batch, jax.random.fold_in(rng, step))  # Placed by parallel.put_tasks.

  result = loop.run_steps(config, workdir, model=model, state=state, step_fn=one_step,
                          validate=make_validator(config, apply_fn, val_sampler),
                          name='meta-step', writer='meta_train', loss_name='query loss',
                          primary=primary)
  report = {'program': 'meta_train', 'steps': config.num_steps,
            'final_val': result['final_val'], 'val_history': result['val_history'],
            'best_step': result['best_step'], 'train_types': list(train_sampler.types),
            'config': config.to_dict()}
  if primary:
    reporting.write_report(workdir, report)
  return report

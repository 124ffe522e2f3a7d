"""What every program builds from its config before it runs, assembled once as a `Run`: the
model, the data source, task samplers and the meta-validator, learning-rate schedules, the
fine-tuning splits.

Programs (`meta_train`, `multitask`, `finetune`, `evaluate`, `lodo`, `transfer`) start with
`meta_run` or `finetune_run` and use what the `Run` holds; they import these pieces instead
of each other's helpers, and import another program only to run it whole.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import ml_collections
import numpy as np
import optax

from metaiqa_jax import checkpoints, configlib, distributed, models, optim, preprocess
from metaiqa_jax.data import base, registry, splits, tasks, views
from metaiqa_jax.models import construct
from metaiqa_jax.train import defaults, evaluation, reporting


@dataclasses.dataclass(frozen=True)
class Run:
  """What a program runs on, assembled once from its config (`meta_run`, `finetune_run`).

  Attributes:
    config: the validated config.
    workdir: the run's writable working directory.
    model: the MetaIQA module `config.model` describes.
    apply_fn: `models.make_apply_fn(model)`, what steps and predictions call.
    inputs: how images become model inputs (`config.data`).
    source: the dataset: the meta-training source (`meta_source`) or the fine-tuning one
      (`finetune_source`).
    train_sampler, val_sampler: the meta-training and meta-validation `TaskSampler`s of the
      source (`make_samplers`), when the run trains on tasks; else None.
    validate: `state -> metrics`, meta-validation on `val_sampler` (`make_validator`); else None.
  """
  config: ml_collections.ConfigDict
  workdir: Any
  model: models.MetaIQA
  apply_fn: models.ApplyFn
  inputs: preprocess.InputSpec
  source: Any
  train_sampler: Optional[tasks.TaskSampler] = None
  val_sampler: Optional[tasks.TaskSampler] = None
  validate: Optional[Callable[[Any], dict]] = None

  def outer_optimizer(self) -> optax.GradientTransformation:
    """`outer_optimizer(config.optim)`."""
    return outer_optimizer(self.config.optim)


def meta_run(config: ml_collections.ConfigDict, workdir, *, source=None, grad_order: int = 1,
             task_samplers: bool = True, verify: bool = False) -> Run:
  """The `Run` of a program on the meta-training data (`meta_source`): meta-training, the
  multitask baseline, LODO; with its task samplers and meta-validator unless
  `task_samplers=False`. See `_assemble` for the other arguments and the errors."""
  _start(config)
  workdir = checkpoints.ensure_writable(workdir)
  source = meta_source(config.data) if source is None else source
  run = _assemble(config, workdir, source, grad_order, verify)
  if not task_samplers:
    return run
  train_sampler, val_sampler = make_samplers(config, run.source, run.inputs)
  return dataclasses.replace(run, train_sampler=train_sampler, val_sampler=val_sampler,
                             validate=make_validator(config, run.apply_fn, val_sampler))


def finetune_run(config: ml_collections.ConfigDict, workdir, *, source=None,
                 grad_order: int = 1, verify: bool = False) -> Run:
  """The `Run` of a program on the fine-tuning dataset (`finetune_source`): fine-tuning,
  evaluation, transfer. See `_assemble` for the arguments and the errors."""
  _start(config)
  workdir = checkpoints.ensure_writable(workdir)
  source = finetune_source(config.finetune) if source is None else source
  return _assemble(config, workdir, source, grad_order, verify)


def _start(config: ml_collections.ConfigDict) -> None:
  """Checks `config` and joins the multi-process run if `config.distributed`: what every
  program does before it writes or reads anything (the workdir is made writable next)."""
  defaults.validate(config)
  distributed.maybe_initialize_distributed(config.distributed)


def _assemble(config, workdir, source, grad_order: int, verify: bool) -> Run:
  """The `Run` of `config` on `source`, in `workdir` (writable), without task samplers.

  Args:
    source: the dataset (a prebuilt one in tests, LODO and pretraining).
    grad_order: how often the program differentiates the backbone's convolutions
      (`construct.build_model`; `conv_grad_order` for meta-training, 0 for scoring).
    verify: decode every image file of the source first, when `config.data.verify_images`
      (programs that train on it; `data.base.verify_source`).

  Raises (with `meta_run` and `finetune_run`, which check the config and the workdir first):
    configlib.ConfigError: the config is invalid (names the key).
    checkpoints.WorkdirError: the workdir cannot be written.
    registry.DatasetError: the dataset's label table does not read.
    base.UnreadableImagesError: `verify` found image files that do not decode.
  """
  if verify and config.data.verify_images:
    base.verify_source(source)
  model = construct.build_model(config.model, grad_order=grad_order)
  return Run(config=config, workdir=workdir, model=model,
             apply_fn=models.make_apply_fn(model),
             inputs=preprocess.InputSpec.from_config(config.data), source=source)


def meta_source(data_config: ml_collections.ConfigDict):
  """The meta-training source: `data.sources` with their `data.roots`, concatenated
  (`views.Concat` numbers the k-th source's types from k * 100 + 1)."""
  if len(data_config.roots) != len(data_config.sources):
    raise ValueError(f'config.data.roots has {len(data_config.roots)} entries for '
                     f'{len(data_config.sources)} config.data.sources')
  built = []
  for name, root in zip(data_config.sources, data_config.roots):
    kwargs = ({'max_side': data_config.synthetic_max_side,
               'workers': data_config.synthetic_workers} if name == 'synthetic' else {})
    built.append(registry.open_source(name, root, 'config.data.sources', **kwargs))
  return built[0] if len(built) == 1 else views.Concat(built)


def task_types(metadata, held_out) -> list[int]:
  """Distortion types of the source minus `held_out` (error on an unknown held-out type)."""
  present = sorted(int(t) for t in np.unique(metadata['dist_type']) if t >= 0)
  unknown = sorted(set(held_out) - set(present))
  if unknown:
    raise ValueError(f'held-out types {unknown} are not in the data (types: {present})')
  return [t for t in present if t not in set(held_out)]


def conv_grad_order(meta_config) -> int:
  """How many times meta-training differentiates the backbone's convolutions (what 'auto'
  convolutions choose their form by, `models.create_model`): 2 for second-order MAML whose
  inner step adapts the backbone; 1 for first-order algorithms and for an inner step on the
  head only (the backbone's features then enter the inner gradient, and the outer gradient
  goes through the backbone once)."""
  return 2 if meta_config.algorithm == 'maml' and meta_config.adapt == 'all' else 1


def inner_lrs(meta_config) -> dict:
  """Per-group inner learning rates: backbone and head, as the authors' code."""
  return {'backbone': meta_config.inner_lr, 'head': meta_config.inner_lr_head}


def outer_optimizer(optim_config) -> optax.GradientTransformation:
  """The optimiser of pretraining's outer steps (`config.optim`: both learning rates and
  their schedule)."""
  return optim.make_optimizer(lr=optim_config.lr, head_lr=optim_config.head_lr,
                              schedule=outer_schedule(optim_config))


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


def make_samplers(config, source, inputs: preprocess.InputSpec):
  """Training and validation `TaskSampler`s, disjoint by reference content, feeding images as
  `inputs` describes."""
  metadata = source.metadata()
  types = task_types(metadata, config.data.held_out_types)
  split = splits.make_splits(metadata, 1, test_fraction=config.data.val_fraction,
                             val_fraction=0.0, seed=config.seed)[0]
  shared = dict(types=types, support_size=config.meta.support_size,
                query_size=config.meta.query_size, tasks_per_batch=config.meta.tasks_per_batch,
                inputs=inputs)
  train = tasks.TaskSampler(views.Subset(source, split['train']), seed=config.seed, train=True,
                            **shared)
  val = tasks.TaskSampler(views.Subset(source, split['test']), seed=(config.seed, 1),
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
    return evaluation.meta_validate(adapt_predict, lr, state.variables, val_sampler,
                                    config.eval_tasks, seed=config.seed)
  return validate


def finetune_source(ft_config: ml_collections.ConfigDict):
  """The fine-tuning dataset named by `config.finetune.source` under `config.finetune.root`
  (with `config.finetune.csv_path` as the label table of 'csv' and 'cid2013')."""
  if ft_config.source == 'csv' and not ft_config.csv_path:
    raise configlib.ConfigError("config.finetune.source 'csv' needs config.finetune.csv_path (the "
                                'label table; config.finetune.root is the image folder)')
  kwargs = {'csv_path': ft_config.csv_path} if ft_config.csv_path else {}
  return registry.open_source(ft_config.source, ft_config.root, 'config.finetune.source', **kwargs)


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
  reporting.write_splits(path, chosen)
  return chosen

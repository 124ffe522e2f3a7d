"""Meta-training: the outer loop over distortion-type tasks, with validation and checkpoints.

`meta_train(config, workdir)` is what `metaiqa-meta-train` runs. Everything it writes is in
`workdir`: `checkpoints/` (latest + best by meta-validation SROCC), `metrics.jsonl` and
TensorBoard events, `report.json`. Started again on the same workdir it resumes from the
latest readable checkpoint; meta-batch `s` is a function of (seed, s) only, so the resumed run
sees the same data and gives the same result as an uninterrupted one.

Preemption (SIGTERM, SIGKILL), NaN losses and resuming are handled by `loop.run_steps`.
"""

from typing import Callable

import jax
import ml_collections

from metaiqa_jax import meta, parallel
from metaiqa_jax.data import pipeline
from metaiqa_jax.models import backbones, construct, make_apply_fn
from metaiqa_jax.models.metaiqa import jitted_backbone
from metaiqa_jax.train import loop, reporting, setup


def make_step(config: ml_collections.ConfigDict, model, tx, *,
              features_once: bool = True) -> Callable:
  """The meta-step `meta_train` runs (`meta.make_meta_step` with `config.meta`'s settings) for
  `model` and the outer optimiser `tx`.

  A backbone frozen whole (`backbones.output_is_fixed`, as the transfer recipe trains it) runs
  once per meta-batch and the step adapts the head on its features, the same step without
  repeating the backbone in every inner step, query pass and shared-statistics pass;
  `features_once=False` keeps it inside the step (bench/efficientnet.py compares the two).
  """
  fixed = features_once and backbones.output_is_fixed(model.arch, model.freeze, model.head_input)
  return meta.make_meta_step(
      make_apply_fn(model, on_features=fixed), tx, inner_steps=config.meta.inner_steps,
      inner_lr=setup.inner_lrs(config.meta), algorithm=config.meta.algorithm,
      task_map=config.meta.task_map or None, adapt=config.meta.adapt, remat=config.meta.remat,
      inner_optimizer=config.meta.inner_optimizer, batch_norm=config.meta.batch_norm,
      features_fn=jitted_backbone(model) if fixed else None)


def meta_train(config: ml_collections.ConfigDict, workdir: str, *,
               source=None) -> dict:
  """Runs (or resumes) meta-training; returns the report also written to workdir/report.json.

  Args:
    config: a validated config (`metaiqa_jax.train.defaults.base_config` layout).
    workdir: where checkpoints, logs and the report go.
    source: optional prebuilt meta-training source (tests, LODO); default `setup.meta_source`.

  Raises:
    loop.NonFiniteLossError: the query loss became NaN/Inf; the last good checkpoint is kept.
    loop.Preempted: SIGTERM arrived; the state of the last finished step was checkpointed.
    UnreadableImagesError: `config.data.verify_images` found image files that cannot be decoded.
  """
  run = setup.meta_run(config, workdir, source=source,
                       grad_order=setup.conv_grad_order(config.meta), verify=True)
  tx = run.outer_optimizer()
  variables = construct.initial_variables(run.model, config.model.init,
                                          jax.random.key(config.seed), config.data.image_size)
  state = meta.init_meta_state(variables, tx, meta_sgd=config.meta.meta_sgd,
                               inner_lr=setup.inner_lrs(config.meta))
  step_fn = make_step(config, run.model, tx)
  task_slice = parallel.process_share(config.meta.tasks_per_batch)
  rng = jax.random.key(config.seed)

  # This process's tasks only; the meta-step assembles every process's share (parallel.put_sharded).
  batches = pipeline.Prefetcher(lambda step: run.train_sampler.sample(step, tasks=task_slice))

  def one_step(state, step):
    return step_fn(state, batches.get(step), jax.random.fold_in(rng, step))

  result = loop.run_steps(config, run.workdir, model=run.model, inputs=run.inputs, state=state,
                          step_fn=one_step, validate=run.validate, name='meta-step',
                          writer='meta_train', loss_name='query loss')
  report = {'program': 'meta_train', 'steps': config.num_steps,
            'final_val': result['final_val'], 'val_history': result['val_history'],
            'best_step': result['best_step'], 'train_types': list(run.train_sampler.types),
            'config': config.to_dict()}
  reporting.write_report(run.workdir, report)
  return report

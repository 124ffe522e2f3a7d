"""Fine-tuning one split: train on its `train` part, choose the epoch on `val`, score `test`.

Shared by `finetune` (N splits of one dataset) and `transfer` (several initialisations on the same
splits, then on all images).
"""

import dataclasses
from typing import Callable, Mapping, Optional

import jax
import numpy as np
import optax

from metaiqa_jax import checkpoints, meta, metrics, models, optim
from metaiqa_jax.data import pipeline
from metaiqa_jax.models import backbones, construct
from metaiqa_jax.train import evaluation, frozen_trunk, loop, reporting, setup, supervised


def lr_schedule(ft_config, steps_per_epoch: int) -> optax.Schedule:
  """`step -> factor` of both fine-tuning learning rates: 'step' (x decay_rate every
  decay_epochs, the paper's) or 'cosine' (to 0 over all epochs)."""
  if ft_config.schedule == 'cosine':
    return optax.cosine_decay_schedule(1.0, ft_config.epochs * steps_per_epoch)
  return optax.exponential_decay(1.0, ft_config.decay_epochs * steps_per_epoch,
                                 ft_config.decay_rate, staircase=True)


@dataclasses.dataclass(frozen=True)
class Feed:
  """How a split's data reaches fine-tuning.

  Attributes:
    apply_fn: what the train step and `predict` run (the model on images, or its head on
      features).
    steps_per_epoch: training steps per epoch.
    batch: `step -> (x, mos_norm)`, the training batch of that step.
    evaluate: `(variables, part) -> (metrics, predictions, mos_norm)` on `split[part]`.
  """
  apply_fn: meta.ApplyFn
  steps_per_epoch: int
  batch: Callable[[int], tuple]
  evaluate: Callable[[Mapping, str], tuple[dict, np.ndarray, np.ndarray]]


def image_feed(run: setup.Run, split: dict, k: int, batch_size: int) -> Feed:
  """Random training crops of the images (`finetune.crops_per_image` per image and epoch,
  loaded and prefetched by `pipeline`), evaluation on each image's views."""
  config, source = run.config, run.source
  ft = config.finetune
  steps_per_epoch = len(split['train']) * ft.crops_per_image // batch_size
  epoch_batches = pipeline.EpochBatches(
      lambda epoch: pipeline.make_batches(
          source, split['train'], batch_size=batch_size, inputs=run.inputs,
          train=True, seed=(config.seed, k, epoch),
          num_epochs=ft.crops_per_image, shard=(jax.process_index(), jax.process_count())),
      steps_per_epoch, worker_count=config.data.worker_count)
  num_steps = ft.epochs * steps_per_epoch
  batches = pipeline.Prefetcher(lambda step: epoch_batches(step) if step < num_steps else None)
  predict = supervised.make_predict(run.apply_fn)

  def batch(step):
    loaded = batches.get(step)
    return loaded['image'], loaded['mos_norm']

  def evaluate(variables, part):
    return evaluation.evaluate_indices(predict, variables, source, split[part], config,
                                       run.inputs)

  return Feed(run.apply_fn, steps_per_epoch, batch, evaluate)


def feature_feed(run: setup.Run, split: dict, k: int, batch_size: int, variables,
                 cache: frozen_trunk.FeatureCache) -> Feed:
  """The frozen backbone's features of every evaluation view, computed once (`frozen_trunk`):
  an epoch shows each view of each training image once, in an order drawn from
  (seed, k, epoch)."""
  features = {part: cache(variables, split[part]) for part in ('train', 'val', 'test')
              if len(split[part])}
  mos = np.asarray(run.source.metadata()['mos_norm'], np.float32)
  n_train, views = features['train'].shape[:2]
  examples = features['train'].reshape((n_train * views, -1))
  labels = np.repeat(mos[split['train']], views)
  steps_per_epoch = len(examples) // batch_size
  apply_fn = models.make_apply_fn(run.model, on_features=True)
  predict = supervised.make_predict(apply_fn)
  devices = jax.device_count()

  def batch(step):
    epoch, i = divmod(step, steps_per_epoch)
    order = np.random.default_rng([run.config.seed, k, epoch]).permutation(len(examples))
    chosen = order[i * batch_size:(i + 1) * batch_size]
    return examples[chosen], labels[chosen]

  def evaluate(variables, part):
    x = features[part]
    padded = np.concatenate([x, np.repeat(x[-1:], -len(x) % devices, axis=0)])
    preds = np.asarray(predict(variables, padded))[:len(x)]
    truth = mos[split[part]]
    return metrics.evaluate_predictions(preds, truth), preds, truth

  return Feed(apply_fn, steps_per_epoch, batch, evaluate)


def finetune_split(run: setup.Run, split: dict, k: int, split_dir, *, desc: str = '',
                   features: Optional[frozen_trunk.FeatureCache] = None) -> dict:
  """Trains on `split['train']`, selects the epoch on `split['val']`, returns the chosen
  checkpoint's val and test metrics (`test` None when `split['test']` is empty).

  An epoch is one pass over the training data (`image_feed`: `finetune.crops_per_image` random
  crops of each image; with a backbone that does not train, `feature_feed`: its features of
  each image's evaluation views, from `features`, a cache shared between calls, or a new one)
  in steps of `loop.run_steps`, which validates and checkpoints every `finetune.validate_every`
  epochs (and every `finetune.checkpoint_every` steps; keeping the latest and the best by val
  SROCC), and brings resume, the NaN stop and SIGTERM. `k` seeds the run (initialisation, data
  order); step s depends on (seed, k, s) only, so a resumed split ends as an uninterrupted one.
  `split_dir` receives its checkpoints, logs and `report.json` (the returned dict); `desc`
  labels the progress bar. The feature path runs in one process (several processes take the
  image path). The run's model, source, inputs and config (`config.model.init` is the start,
  `config.finetune` the recipe) are used; its workdir is not.

  Returns:
    `{'split': k, 'best_epoch', 'val', 'test'}`, plus `predictions` and `mos_norm` (the test
    images', normalised) when there is a test part.
  """
  config, ft = run.config, run.config.finetune
  split_dir = checkpoints.ensure_writable(split_dir)
  # A batch is split over all devices: at most ft.batch_size images, a multiple of the devices.
  devices = jax.device_count()
  batch_size = min(ft.batch_size, len(split['train'])) // devices * devices
  if not batch_size:
    raise ValueError(f'fine-tuning split {k} has {len(split["train"])} training images, fewer '
                     f'than the {devices} devices a batch is split over')
  split_key = jax.random.fold_in(jax.random.key(config.seed), k)
  variables = construct.initial_variables(run.model, config.model.init,
                                          jax.random.fold_in(split_key, 0), config.data.image_size)
  fixed = backbones.output_is_fixed(config.model.arch, config.model.freeze,
                                    config.model.head_input)
  if fixed and jax.process_count() == 1:
    cache = features or frozen_trunk.FeatureCache(run.model, run.source, run.inputs,
                                                  batch_size=ft.eval_batch_size)
    feed = feature_feed(run, split, k, batch_size, variables, cache)
  else:
    feed = image_feed(run, split, k, batch_size)
  steps_per_epoch = feed.steps_per_epoch
  tx = optim.make_optimizer(lr=ft.lr, head_lr=ft.head_lr, train_backbone=not fixed,
                            schedule=lr_schedule(ft, steps_per_epoch))
  train_step = supervised.make_train_step(feed.apply_fn, tx)
  dropout_key = jax.random.fold_in(split_key, 1)
  num_steps = ft.epochs * steps_per_epoch

  def one_step(state, step):
    x, mos = feed.batch(step)
    return train_step(state, x, mos, jax.random.fold_in(dropout_key, step))

  trained = loop.run_steps(
      config, split_dir, model=run.model, inputs=run.inputs,
      state=meta.init_meta_state(variables, tx), step_fn=one_step, validate=lambda state: feed.evaluate(state.variables, 'val')[0],
      name=f'fine-tuning split {k}, step', desc=desc or f'fine-tune split {k}',
      writer='finetune',
      schedule=loop.Schedule(num_steps=num_steps, log_every=steps_per_epoch,
                             eval_every=steps_per_epoch * ft.validate_every,
                             checkpoint_every=(ft.checkpoint_every
                                               or steps_per_epoch * ft.validate_every),
                             keep_latest=1, keep_best=1))
  _, best = checkpoints.restore_variables(split_dir)
  val, _, _ = feed.evaluate(best, 'val')
  result = {'split': k, 'best_epoch': trained['best_step'] // steps_per_epoch, 'val': val,
            'test': None}
  if len(split['test']):
    test, preds, mos = feed.evaluate(best, 'test')
    result |= {'test': test, 'predictions': preds.tolist(), 'mos_norm': mos.tolist()}
  reporting.write_report(split_dir, result)
  return result

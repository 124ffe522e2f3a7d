"""Fine-tuning one split: train on its `train` part, choose the epoch on `val`, score `test`.

Shared by `finetune` (N splits of one dataset) and `transfer` (several initialisations on the same
splits, then on all images).
"""

import jax
import optax

from metaiqa_jax import checkpoints, meta, optim
from metaiqa_jax.data import pipeline
from metaiqa_jax.models import construct
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

  An epoch is `len(train) * finetune.crops_per_image // batch` steps of `loop.run_steps`, which
  validates and checkpoints every `finetune.validate_every` epochs (and every
  `finetune.checkpoint_every` steps; keeping the latest and the best by val SROCC), and
  brings resume, the NaN stop and SIGTERM. `k` seeds the run (initialisation, data order); step
  s depends on (seed, k, s) only, so a resumed split ends as an uninterrupted one. `split_dir`
  receives its checkpoints, logs and `report.json` (the returned dict); `desc` labels the
  progress bar.

  Returns:
    `{'split': k, 'best_epoch', 'val', 'test'}`, plus `predictions` and `mos_norm` (the test
    images', normalised) when there is a test part.
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
  tx = optim.make_optimizer(lr=ft.lr, head_lr=ft.head_lr,
                            schedule=lr_schedule(ft, steps_per_epoch))
  split_key = jax.random.fold_in(jax.random.key(config.seed), k)
  variables = construct.initial_variables(model, config.model.init,
                                       jax.random.fold_in(split_key, 0), config.data.image_size)
  train_step = supervised.make_train_step(apply_fn, tx)
  predict = supervised.make_predict(apply_fn)
  dropout_key = jax.random.fold_in(split_key, 1)
  epoch_batches = pipeline.EpochBatches(
      lambda epoch: pipeline.make_batches(
          source, split['train'], batch_size=batch_size, inputs=common.input_spec(config.data),
          train=True, seed=(config.seed, k, epoch),
          num_epochs=ft.crops_per_image, shard=(jax.process_index(), jax.process_count())),
      steps_per_epoch, worker_count=config.data.worker_count)
  num_steps = ft.epochs * steps_per_epoch
  batches = common.Prefetcher(lambda step: epoch_batches(step) if step < num_steps else None)

  def one_step(state, step):
    batch = batches.get(step)
    return train_step(state, batch['image'], batch['mos_norm'],
                      jax.random.fold_in(dropout_key, step))

  def evaluate(variables, part: str):
    return evaluation.evaluate_indices(predict, variables, source, split[part], config)

  run = loop.run_steps(
      config, split_dir, model=model, state=meta.init_meta_state(variables, tx),
      step_fn=one_step, validate=lambda state: evaluate(state.variables, 'val')[0],
      name=f'fine-tuning split {k}, step', desc=desc or f'fine-tune split {k}',
      writer='finetune', primary=jax.process_index() == 0,
      schedule=loop.Schedule(num_steps=num_steps, log_every=steps_per_epoch,
                             eval_every=steps_per_epoch * ft.validate_every,
                             checkpoint_every=(ft.checkpoint_every
                                               or steps_per_epoch * ft.validate_every),
                             keep_latest=1, keep_best=1))
  _, best = checkpoints.restore_variables(split_dir)
  val, _, _ = evaluate(best, 'val')
  result = {'split': k, 'best_epoch': run['best_step'] // steps_per_epoch, 'val': val,
            'test': None}
  if len(split['test']):
    test, preds, mos = evaluate(best, 'test')
    result |= {'test': test, 'predictions': preds.tolist(), 'mos_norm': mos.tolist()}
  reporting.write_report(split_dir, result)
  return result

"""Scoring models: on a dataset's images, after k-shot adaptation, and meta-validation."""

import logging
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from metaiqa_jax import meta, metrics, preprocess
from metaiqa_jax.data import pipeline
from metaiqa_jax.train import supervised


def evaluate_indices(predict: Callable, variables: Mapping, source, indices, config,
                     inputs=None) -> tuple[dict, np.ndarray, np.ndarray]:
  """Metrics (`metrics.evaluate_predictions`) of `variables` on `source[indices]`, plus the
  predictions and normalised MOS, each (N,).

  `predict` is `supervised.make_predict(apply_fn)`. Images are fed as `inputs` describes
  (default: `config.data`'s), each scored as the mean over its evaluation views, in batches of
  `config.finetune.eval_batch_size` images (rounded up to a multiple of the device count) of
  which each process loads its share; every process gets the whole result.
  """
  inputs = inputs or preprocess.InputSpec.from_config(config.data)
  devices = jax.device_count()
  batch_size = -(-config.finetune.eval_batch_size // devices) * devices
  loader = pipeline.make_eval_loader(source, indices, batch_size=batch_size, inputs=inputs,
                                     worker_count=config.data.worker_count,
                                     shard=(jax.process_index(), jax.process_count()))
  preds, mos, _ = supervised.predict_loader(predict, variables, loader)
  return metrics.evaluate_predictions(preds, mos), preds, mos


def make_adapt_predict(apply_fn: meta.ApplyFn, *, steps: int, adapt: meta.AdaptSpec = 'all',
                       inner_optimizer: str = 'sgd', batch_norm: str = 'task') -> Callable:
  """`fn(inner_lr, variables, support_x, support_y (k,), query_x, rng) -> (q,)`.

  Images are (n, S, S, 3), or (n, V, S, S, 3) for V evaluation views per image
  (`preprocess.InputSpec.eval`): every view of a support image is a training example with the
  image's label, and a query image's score is the mean over its views.

  Adapts a copy of `variables` with `steps` inner steps on the support set (BatchNorm as
  `batch_norm` says, as in meta-training: `meta.inner_adapt`), then predicts the query set in
  eval mode. `steps=0` (or an
  empty support set) predicts with `variables` as they are. `inner_lr` is a scalar, a
  `{'backbone', 'head'}` dict or Meta-SGD's per-parameter rates (an argument, so learned rates
  need no recompilation). Jitted; compiles once per shape.
  """
  def fn(inner_lr, variables, support_x, support_y, query_x, rng):
    if steps > 0 and support_x.shape[0] > 0:
      if support_x.ndim == 5:
        views = support_x.shape[1]
        support_x = support_x.reshape((-1,) + support_x.shape[2:])
        support_y = jnp.repeat(support_y, views)
      variables = meta.inner_adapt(apply_fn, variables, (support_x, support_y), steps=steps,
                                   inner_lr=inner_lr, adapt=adapt, rng=rng,
                                   inner_optimizer=inner_optimizer, batch_norm=batch_norm)
    return supervised.predict_views(apply_fn, variables, query_x)
  return jax.jit(fn)


def eval_views(source, indices, inputs) -> np.ndarray:
  """The evaluation views (`inputs.eval`) of `source[indices]`: float32 (n, V, S, S, 3); n may
  be 0."""
  if not len(indices):
    return np.zeros((0, inputs.num_views, inputs.image_size, inputs.image_size, 3), np.float32)
  return np.stack([inputs.eval(source[int(i)]['image']) for i in indices])


def shot_rows(adapt_predict: Mapping[int, Callable], inner_lr: Any, variables: Mapping,
              support: tuple, query: tuple, *, shots, steps, key: jax.Array,
              fields: Mapping) -> list[dict]:
  """Held-out evaluation after k-shot adaptation, shared by the demo and LODO.

  For every k in `shots` and s in `steps`: adapt `variables` with s inner steps on the first k
  `support` images (`adapt_predict[s]`, see `make_adapt_predict`; k = 0 is scored once, without
  adaptation) and correlate its scores of the `query` images with their labels.

  Args:
    support, query: `(x (n, V, S, S, 3), y (n,))`; support holds at least max(shots) images.
    key: the adaptation's dropout key.
    fields: copied into every row.

  Returns:
    rows `{**fields, k, steps, srocc, plcc}` (`metrics.correlations`: NaN and `error` where the
    scores are constant).
  """
  (support_x, support_y), (query_x, query_y) = support, query
  rows = []
  for k in shots:
    for s in (steps if k else (0,)):
      pred = np.asarray(adapt_predict[s](inner_lr, variables, support_x[:k], support_y[:k],
                                         query_x, key))
      rows.append({**fields, 'k': int(k), 'steps': int(s)} | metrics.correlations(pred, query_y))
  return rows


def meta_validate(adapt_predict: Callable, inner_lr: Any, variables: Mapping, sampler,
                  num_batches: int, seed: int = 0) -> dict:
  """Adapts to each task of `num_batches` fixed meta-batches and scores its query set.

  `sampler` is a `data.tasks.TaskSampler` over validation references; batch b is
  `sampler.sample(b)`, so every evaluation sees the same tasks. Returns SROCC/PLCC/KRCC/RMSE of
  all query predictions pooled (`metrics.evaluate_predictions`), plus `task_srocc`, the mean
  per-task SROCC (tasks whose labels are constant are skipped), and `loss` (query MSE).
  """
  preds, labels, per_task = [], [], []
  for b in range(num_batches):
    batch_key = jax.random.fold_in(jax.random.key(seed), b)
    tasks = sampler.sample(b)
    (sx, sy), (qx, qy) = tasks['support'], tasks['query']
    for t in range(sx.shape[0]):
      p = np.asarray(adapt_predict(inner_lr, variables, sx[t], sy[t], qx[t],
                                   jax.random.fold_in(batch_key, t)))
      preds.append(p)
      labels.append(qy[t])
      if len(p) >= metrics.MIN_PAIRS and np.ptp(qy[t]) > 0 and np.ptp(p) > 0:
        per_task.append(metrics.srocc(p, qy[t]))
  preds, labels = np.concatenate(preds), np.concatenate(labels)
  try:
    result = metrics.evaluate_predictions(preds, labels)
    del result['logistic']
  except ValueError as e:  # A collapsed model (constant output) is a result, not a crash.
    logging.warning('meta-validation: %s', e)
    result = {name: float('nan') for name in ('srocc', 'plcc', 'plcc_logistic', 'krcc', 'rmse')}
  result['task_srocc'] = float(np.mean(per_task)) if per_task else float('nan')
  result['loss'] = float(np.mean((preds - labels) ** 2))
  return result

"""Plain supervised regression on (image, MOS) batches: fine-tuning and the multitask baseline.

Uses the meta-learner's state and optimiser (`meta.MetaTrainState` with `inner_lr=None`,
`optim.make_optimizer`), so a fine-tuned model and a meta-trained one are saved, restored and
scored the same way.

Data parallel: the images of a batch are sharded over the devices of a 1-D mesh (all devices of
all processes by default) and each process passes only its share (`parallel.process_share`);
parameters are replicated, and BatchNorm statistics, losses and gradients span the whole batch,
so the result does not depend on the device or process count (up to the order of float sums).
"""

from typing import Callable, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from metaiqa_jax import meta, parallel


def make_train_step(apply_fn: meta.ApplyFn, tx: optax.GradientTransformation,
                    loss_fn: meta.LossFn = meta.mse, mesh: Optional[Mesh] = None) -> Callable:
  """`step(state, images (b,S,S,3), mos (b,), rng) -> (state, {'loss', 'grad_norm'})`, jitted.

  `images` and `mos` are this process's share (b = B / processes) of a batch of B images, B a
  multiple of the device count of `mesh` (default `parallel.make_mesh()`); the returned state
  and metrics are replicated. Training mode: BatchNorm normalises with the statistics of the
  whole batch and updates its running ones, dropout is on (keyed by `rng`).
  """
  mesh = parallel.make_mesh() if mesh is None else mesh

  def step(state: meta.MetaTrainState, images, mos, rng):
    def loss(params):
      pred, new_state = apply_fn(state.variables | {'params': params}, images, True,
                                 rngs={'dropout': rng})
      return loss_fn(pred, mos), new_state

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          batch_stats=new_state['batch_stats'], opt_state=opt_state)
    return state, {'loss': value.astype(jnp.float32), 'grad_norm': optax.tree.norm(grads)}

  jitted = jax.jit(step, donate_argnums=(0,), out_shardings=NamedSharding(mesh, P()))

  def train_step(state: meta.MetaTrainState, images, mos, rng):
    parallel.check_even_split(len(images), mesh, 'images', 'a training batch')
    state, rng = parallel.replicate((state, rng), mesh)
    return jitted(state, *parallel.put_sharded((images, mos), mesh), rng)
  return train_step


def predict_views(apply_fn: meta.ApplyFn, variables, images: jax.Array) -> jax.Array:
  """Eval-mode scores (running BatchNorm statistics): images (B, S, S, 3) -> (B,), or
  (B, V, S, S, 3) views of B images -> (B,), the mean over each image's V views."""
  if images.ndim == 4:
    return apply_fn(variables, images, False)[0]
  scores = apply_fn(variables, images.reshape((-1,) + images.shape[2:]), False)[0]
  return scores.reshape(images.shape[:2]).mean(axis=1)


def make_predict(apply_fn: meta.ApplyFn, mesh: Optional[Mesh] = None) -> Callable:
  """`predict(variables, images) -> (B,)` numpy: `predict_views`, jitted (once per input shape),
  data parallel over `mesh` (default `parallel.make_mesh()`).

  `images` (b, ...) is this process's share of a batch of B images (B a multiple of the device
  count); every process gets the scores of the whole batch, in process order.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  jitted = jax.jit(lambda variables, images: predict_views(apply_fn, variables, images),
                   out_shardings=NamedSharding(mesh, P()))

  def predict(variables, images):
    parallel.check_even_split(len(images), mesh, 'images', 'a scoring batch')
    return np.asarray(jitted(parallel.replicate(variables, mesh),
                             parallel.put_sharded(images, mesh)))
  return predict


def predict_loader(predict: Callable, variables: Mapping,
                   batches: Iterable[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
  """Runs `predict` over an eval loader (`data.pipeline.make_eval_loader`; with several
  processes, each passes the loader of its shares).

  Returns (predictions, mos_norm, source indices) of the whole dataset, each (N,), padding
  dropped, on every process.
  """
  preds, mos, index = [], [], []
  for batch in batches:
    scores = predict(variables, batch['image'])
    keep, labels, where = parallel.gather_shares((batch['mask'], batch['mos_norm'],
                                                  batch['index']))
    preds.append(scores[keep])
    mos.append(labels[keep])
    index.append(where[keep])
  return np.concatenate(preds), np.concatenate(mos), np.concatenate(index)

"""Plain supervised regression on (image, MOS) batches: fine-tuning and the multitask baseline.

Uses the meta-learner's state and optimiser (`meta.MetaTrainState` with `inner_lr=None`,
`optim.make_optimizer`), so a fine-tuned model and a meta-trained one are saved, restored and
scored the same way.
"""

from typing import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaiqa_jax import meta


def make_train_step(apply_fn: meta.ApplyFn, tx: optax.GradientTransformation,
                    loss_fn: meta.LossFn = meta.mse) -> Callable:
  """`step(state, images (B,S,S,3), mos (B,), rng) -> (state, {'loss', 'grad_norm'})`, jitted.

  Training mode: BatchNorm normalises with batch statistics and updates its running ones,
  dropout is on (keyed by `rng`).
  """
  def step(state: meta.MetaTrainState, images, mos, rng):
    variables = {'params': state.params, 'batch_stats': state.batch_stats}

    def loss(params):
      pred, new_state = apply_fn(variables | {'params': params}, images, True,
                                 rngs={'dropout': rng})
      return loss_fn(pred, mos), new_state

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          batch_stats=new_state['batch_stats'], opt_state=opt_state)
    return state, {'loss': value.astype(jnp.float32), 'grad_norm': optax.global_norm(grads)}

  return jax.jit(step, donate_argnums=(0,))


def predict_views(apply_fn: meta.ApplyFn, variables, images: jax.Array) -> jax.Array:
  """Eval-mode scores (running BatchNorm statistics): images (B, S, S, 3) -> (B,), or
  (B, V, S, S, 3) views of B images -> (B,), the mean over each image's V views."""
  if images.ndim == 4:
    return apply_fn(variables, images, False)[0]
  scores = apply_fn(variables, images.reshape((-1,) + images.shape[2:]), False)[0]
  return scores.reshape(images.shape[:2]).mean(axis=1)


def make_predict(apply_fn: meta.ApplyFn) -> Callable:
  """`predict(variables, images) -> (B,)`: `predict_views`, jitted (once per input shape)."""
  return jax.jit(lambda variables, images: predict_views(apply_fn, variables, images))


def predict_loader(predict: Callable, variables: Mapping,
                   batches: Iterable[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
  """Runs `predict` over an eval loader (`data.pipeline.make_eval_loader`).

  Returns (predictions, mos_norm, source indices), each (N,), padding dropped.
  """
  preds, mos, index = [], [], []
  for batch in batches:
    keep = batch['mask']
    preds.append(np.asarray(predict(variables, batch['image']))[keep])
    mos.append(batch['mos_norm'][keep])
    index.append(batch['index'][keep])
  return np.concatenate(preds), np.concatenate(mos), np.concatenate(index)

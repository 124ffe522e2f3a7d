"""`adapt`: few-shot fine-tuning of a quality model on a handful of labelled images.

This is the "learn quality quickly" half of MetaIQA: a meta-learned initialisation is adapted to
a new distortion or dataset from a few images with their MOS. The update is the one the model
was meta-trained for: Adam on the MSE between predicted and given MOS, with BatchNorm in
training mode (batch statistics, running statistics updated and returned) and dropout on.
"""

from typing import Any, Mapping, Sequence

import jax
import numpy as np
import optax

from metaiqa_jax import meta, optim
from metaiqa_jax.models.metaiqa import MetaIQA, infer_model_config, make_apply_fn
from metaiqa_jax.preprocess import prepare_images


def _check_mos(support_mos, count: int) -> np.ndarray:
  mos = np.asarray(support_mos, np.float32)
  if mos.shape != (count,):
    raise ValueError(f'support_mos must hold one score per support image ({count}); got shape '
                     f'{mos.shape}')
  bad = np.flatnonzero(~np.isfinite(mos) | (mos < 0) | (mos > 1))
  if bad.size:
    raise ValueError(f'support_mos must be in the model label scale [0, 1]; item {bad[0]} is '
                     f'{mos[bad[0]]} (normalise MOS first, e.g. TID2013 MOS / 9)')
  return mos


def adapt(variables: Mapping[str, Any], support_images: Sequence[Any], support_mos: Sequence[float],
          *, model: MetaIQA | None = None, steps: int = 20, lr: float = 1e-4,
          head_lr: float | None = 1e-3, adapt: meta.AdaptSpec = 'all', image_size: int = 224,
          batch_size: int | None = None, seed: int = 0) -> dict:
  """Fine-tunes a MetaIQA model on a few labelled images and returns the new variables.

  Defaults: 20 Adam steps over the whole support set, learning rate 1e-4 for the backbone and
  1e-3 for the head (the head starts far from any new task's optimum, the backbone features
  should move little); the input variables are not modified.

  Args:
    variables: `{'params', 'batch_stats'}` of a MetaIQA model (`init_variables`,
      `load_torch_weights`, a checkpoint or meta-training).
    support_images: uint8/float `(H, W, 3)` arrays of any sizes and/or image file paths; each is
      resized to `image_size` and normalised (`preprocess.prepare_images`). At least 2 (training-
      mode BatchNorm needs a batch).
    support_mos: their scores in the model's label scale [0, 1] (e.g. LIVE Challenge MOS / 100).
    model: the `MetaIQA` module; None: built from the variables' shapes (`infer_model_config`,
      dropout 0.5).
    steps: Adam steps.
    lr: backbone learning rate (everything outside `params['head']`).
    head_lr: head learning rate; None = `lr`.
    adapt: what changes: 'all' | 'head' | predicate(path) -> bool (see `meta.adapt_mask`).
    image_size: model input side, pixels.
    batch_size: images per step; None = all. Smaller batches cycle through a shuffled order.
    seed: seeds the shuffling and the dropout masks.

  Returns:
    `{'params', 'batch_stats'}` after adaptation (float32 pytrees).

  Raises:
    ValueError: fewer than 2 images, a MOS count or range problem, bad steps/batch_size.
    ImageReadError: a support file cannot be read (names it).
  """
  images = prepare_images(support_images, image_size)
  count = images.shape[0]
  if count < 2:
    raise ValueError(f'adapt needs at least 2 support images, got {count}')
  mos = _check_mos(support_mos, count)
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  batch_size = count if batch_size is None else batch_size
  if not 2 <= batch_size <= count:
    raise ValueError(f'batch_size must be in [2, {count}] (the support size), got {batch_size}')
  if model is None:
    config = infer_model_config(variables)
    model = config.create()
  apply_fn = make_apply_fn(model)
  params, batch_stats = variables['params'], variables['batch_stats']
  mask = meta.adapt_mask(params, adapt)
  tx = optim.make_optimizer(lr=lr, head_lr=head_lr)

  @jax.jit
  def step(params, batch_stats, opt_state, x, y, key):
    def loss_fn(params):
      # Frozen leaves get no gradient at all, so 'head' skips the backbone's backward pass.
      params = jax.tree.map(lambda m, p: p if m else jax.lax.stop_gradient(p), mask, params)
      pred, state = apply_fn({'params': params, 'batch_stats': batch_stats}, x, True,
                             {'dropout': key})
      return meta.mse(pred, y), state['batch_stats']

    grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)  # zero gradient: zero Adam step
    return optax.apply_updates(params, updates), batch_stats, opt_state

  order_rng = np.random.default_rng(seed)
  dropout_key = jax.random.key(seed)
  opt_state = tx.init(params)
  order = np.zeros(0, np.int64)
  for i in range(steps):
    if order.size < batch_size:
      order = np.concatenate([order, order_rng.permutation(count)])
    batch, order = order[:batch_size], order[batch_size:]
    params, batch_stats, opt_state = step(params, batch_stats, opt_state, images[batch],
                                          mos[batch], jax.random.fold_in(dropout_key, i))
  return {'params': params, 'batch_stats': batch_stats}

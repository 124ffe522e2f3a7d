"""`adapt`: few-shot fine-tuning of a quality model on a handful of labelled images.

This is the "learn quality quickly" half of MetaIQA: a model is adapted to a new distortion or
dataset from a few images with their MOS, by Adam on the MSE between predicted and given MOS,
BatchNorm in training mode (batch statistics; running statistics updated and returned) and
dropout on. Two ways, by what the model lets change:

- a model whose backbone is frozen whole (`models.backbones.output_is_fixed`, as the shipped
  one): only the head can move, so the backbone's evaluation-mode features of every support
  image's evaluation views are computed once (`support_features`) and the head is trained on
  them (`adapt_head`), each view an example labelled with its image's MOS, as fine-tuning on a
  frozen backbone does (`train.frozen_trunk`). 20 images take seconds on a CPU.
- any other model: the whole network on the images resized to `image_size` (`adapt`'s image
  path), `adapt` choosing what trains.
"""

import functools
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaiqa_jax import meta, metrics, optim, quality_model
from metaiqa_jax.models import backbones
from metaiqa_jax.models.metaiqa import (MetaIQA, ModelConfig, infer_model_config,
                                        jitted_backbone, make_apply_fn, model_config)
from metaiqa_jax.preprocess import InputSpec, load_image, prepare_images

# The head's adaptation on frozen features (`adapt_head`), chosen by `launch/adaptation.py
# --sweep` on 4 synthetic distortion types the demo trains on (never the held-out ones it
# reports): at k = 20, SROCC 0.448 before; after 10 / 30 / 100 / 300 steps at 3e-3: 0.587 /
# 0.692 / 0.740 / 0.776, at 1e-3: 0.606 / 0.689 / 0.724 / 0.755, lower rates less. 100 steps
# keep most of the gain at a third of 300's cost (a step is ~45 ms for 20 images x 9 crops on
# 2 cores, half of it Adam's update of the head's 3.4 M parameters); k = 5 moves little
# whatever the setting (-0.03 to +0.04).
HEAD_STEPS = 100
HEAD_LR = 3e-3


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


def support_pair(support, support_mos=None) -> tuple[Sequence, np.ndarray]:
  """`(images, mos)` from `support` = `(images, mos)` or `{'images', 'mos'}` (mos None), or from
  `support` = images and `support_mos`."""
  if support_mos is not None:
    return support, support_mos
  if isinstance(support, Mapping):
    missing = {'images', 'mos'} - support.keys()
    if missing:
      raise ValueError(f'a support mapping needs the keys images and mos; missing {sorted(missing)}')
    return support['images'], support['mos']
  if isinstance(support, tuple) and len(support) == 2:
    return support
  raise ValueError('support must be an (images, mos) pair or a mapping {images, mos} (or give '
                   'support_mos)')


def head_only_trains(model: MetaIQA) -> bool:
  """True when `model`'s backbone output is a fixed function of the image (frozen whole)."""
  return backbones.output_is_fixed(model.arch, model.freeze, model.head_input)


@functools.lru_cache(maxsize=8)
def _backbone_fn(config: ModelConfig, dtype: Any, conv_impl: Optional[str]):
  """`(variables, x (B, S, S, 3)) -> (B, D)`: the backbone in evaluation mode, jitted once per
  model and input shape (forward-only convolutions)."""
  return jitted_backbone(config.create(dtype, conv_impl, grad_order=0))


def support_features(model: MetaIQA, variables: Mapping, images_or_paths: Sequence,
                     inputs: InputSpec, *, batch_size: int = 32) -> np.ndarray:
  """The backbone's evaluation-mode output for each evaluation view of each image.

  Args:
    model: the `MetaIQA` module (its `head_input` says which features).
    variables: its `{'params', 'batch_stats'}`.
    images_or_paths: uint8/float `(H, W, 3)` arrays and/or image file paths.
    inputs: how an image becomes its views (`InputSpec.eval`).
    batch_size: views per device call (the last call is zero-padded to the same shape).

  Returns:
    float32 `(N, V, D)`, V = `inputs.num_views`.

  Raises:
    ImageReadError: a file cannot be read (names it).
  """
  backbone = _backbone_fn(model_config(model), model.dtype, model.conv_impl)
  variables = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  views = np.concatenate([inputs.eval(load_image(item)) for item in images_or_paths])
  count = len(views)
  views = np.concatenate([views, np.zeros((-count % batch_size,) + views.shape[1:], np.float32)])
  parts = [np.asarray(backbone(variables, views[i:i + batch_size]))
           for i in range(0, len(views), batch_size)]
  return np.concatenate(parts)[:count].reshape(len(images_or_paths), inputs.num_views, -1)


@functools.lru_cache(maxsize=8)
def _head_step(model: MetaIQA, lr: float):
  """(jitted Adam step of the head's variables `{'params', 'batch_stats'}` on features `(n, D)`,
  the optimiser). The backbone's variables are not passed: the head does not read them.

  The head's variables and the Adam state are donated (updated in place): fresh output buffers
  for the head's 3.4 M parameters and two moment trees cost an Adam step 19-65 ms against 4-5 ms
  donated (2 cores; BENCHMARKS.md). Callers pass arrays of their own, never the model's."""
  apply_fn = make_apply_fn(model, on_features=True)
  tx = optax.adam(lr)

  def step(head, opt_state, x, y, key):
    def loss_fn(params):
      pred, state = apply_fn({'params': {'head': params},
                              'batch_stats': {'head': head['batch_stats']}}, x, True,
                             {'dropout': key})
      return meta.mse(pred, y), state['batch_stats']['head']
    grads, batch_stats = jax.grad(loss_fn, has_aux=True)(head['params'])
    updates, opt_state = tx.update(grads, opt_state, head['params'])
    return {'params': optax.apply_updates(head['params'], updates),
            'batch_stats': batch_stats}, opt_state

  return jax.jit(step, donate_argnums=(0, 1)), tx


@functools.lru_cache(maxsize=8)
def _head_predict(model: MetaIQA):
  apply_fn = make_apply_fn(model, on_features=True)

  def predict(variables, features):
    n, v, d = features.shape
    return apply_fn(variables, features.reshape(n * v, d), False)[0].reshape(n, v).mean(axis=1)
  return jax.jit(predict)


def head_scores(model: MetaIQA, variables: Mapping, features: np.ndarray) -> np.ndarray:
  """Scores in (0, 1) from `support_features`-style features `(N, V, D)`: the head in evaluation
  mode on every view, averaged over views. float32 `(N,)`."""
  head = {c: {'head': variables[c]['head']} for c in ('params', 'batch_stats')}
  return np.asarray(_head_predict(model)(head, jnp.asarray(features)))


def adapt_head(model: MetaIQA, variables: Mapping, features: np.ndarray, mos,
               *, steps: int = HEAD_STEPS, lr: float = HEAD_LR, seed: int = 0) -> dict:
  """Trains the head on frozen-backbone features of the support images.

  Every step is one Adam step over every view of every support image (the head's BatchNorm sees
  them as one batch; dropout masks from `seed`).

  Args:
    model: the `MetaIQA` module.
    variables: its `{'params', 'batch_stats'}` (not modified).
    features: `(k, V, D)` from `support_features`.
    mos: `(k,)` in [0, 1].
    steps, lr: Adam steps and learning rate.
    seed: seeds the dropout masks.

  Returns:
    `{'params', 'batch_stats'}`: the backbone's unchanged, the head's adapted.
  """
  k, v, d = features.shape
  mos = _check_mos(mos, k)
  if k < 2:
    raise ValueError(f'adaptation needs at least 2 support images, got {k}')
  if steps < 1:
    raise ValueError(f'steps must be >= 1, got {steps}')
  step, tx = _head_step(model, float(lr))
  x, y = jnp.asarray(features.reshape(k * v, d)), jnp.asarray(np.repeat(mos, v))
  # Copies: the steps donate them, and `variables` stays the caller's.
  head = jax.tree.map(jnp.array, {c: variables[c]['head'] for c in ('params', 'batch_stats')})
  opt_state = tx.init(head['params'])
  key = jax.random.key(seed)
  for i in range(steps):
    head, opt_state = step(head, opt_state, x, y, jax.random.fold_in(key, i))
  params = {**variables['params'], 'head': head['params']}
  batch_stats = {**variables['batch_stats'], 'head': head['batch_stats']}
  return {'params': params, 'batch_stats': batch_stats}


def held_out_srocc(model: MetaIQA, variables: Mapping, features: np.ndarray, mos, *,
                   folds: int = 5, seed: int = 0, **adapt_kwargs) -> dict:
  """Leave-some-out check of `adapt_head` on a support set: `folds` seeded parts, each scored
  by the model adapted on the others.

  Returns:
    `{'before': SROCC of the unadapted model on all support images, 'after': SROCC of the
    out-of-fold predictions, 'folds'}`.
  """
  mos = np.asarray(mos, np.float32)
  order = np.random.default_rng(seed).permutation(len(mos))
  predictions = np.zeros(len(mos), np.float32)
  for part in np.array_split(order, folds):
    rest = np.setdiff1d(order, part)
    adapted = adapt_head(model, variables, features[rest], mos[rest], seed=seed, **adapt_kwargs)
    predictions[part] = head_scores(model, adapted, features[part])
  return {'before': metrics.srocc(head_scores(model, variables, features), mos),
          'after': metrics.srocc(predictions, mos), 'folds': folds}


def adapt(variables: Mapping[str, Any], support, support_mos: Optional[Sequence[float]] = None,
          *, model: MetaIQA | None = None, inputs: InputSpec | None = None,
          steps: int | None = None, lr: float | None = None, head_lr: float | None = 1e-3,
          adapt: meta.AdaptSpec = 'all', image_size: int = 224,
          batch_size: int | None = None, seed: int = 0) -> dict:
  """Fine-tunes a MetaIQA model on a few labelled images and returns the new variables.

  `adapt(variables, (images, mos))`, `adapt(variables, {'images': ..., 'mos': ...})` and
  `adapt(variables, images, mos)` are the same call. (`QualityModel.adapt` wraps it for a
  loaded model.)

  With `model` given and its backbone frozen whole (`head_only_trains`), only the head trains,
  on the features of each image's evaluation views (`inputs`; default: the whole image resized
  to `image_size`): `steps` (default `HEAD_STEPS`) Adam steps at `lr` (default `HEAD_LR`) over
  all of them (`adapt_head`); `head_lr`, `adapt` and `batch_size` do not apply.

  Otherwise (the image path) the whole model runs in training mode on the images resized to
  `image_size`: `steps` (default 20) Adam steps, learning rate `lr` (default 1e-4) for the
  backbone and `head_lr` for the head (the head starts far from any new task's optimum, the
  backbone features should move little), `adapt` choosing what changes.

  Args:
    variables: `{'params', 'batch_stats'}` of a MetaIQA model (`init_variables`,
      `load_torch_weights`, a checkpoint), not modified; or a `QualityModel` (`load_model()`),
      which brings its module and inputs.
    support: the images (uint8/float `(H, W, 3)` arrays of any sizes and/or file paths), or
      `(images, mos)`, or `{'images', 'mos'}`. At least 2 images (training-mode BatchNorm
      needs a batch).
    support_mos: their scores in the model's label scale [0, 1] (e.g. LIVE Challenge MOS / 100),
      when `support` is the images alone.
    model: the `MetaIQA` module; None: built from the variables' shapes (`infer_model_config`,
      dropout 0.5, nothing frozen: the image path).
    inputs: the feature path's evaluation views (`QualityModel.inputs`).
    steps: Adam steps.
    lr: the feature path's head rate, or the image path's backbone rate.
    head_lr: image path: head learning rate; None = `lr`.
    adapt: image path: what changes: 'all' | 'head' | predicate(path) -> bool
      (`meta.adapt_mask`).
    image_size: model input side, pixels, where `inputs` does not give it.
    batch_size: image path: images per step; None = all. Smaller batches cycle through a
      shuffled order.
    seed: seeds the shuffling and the dropout masks.

  Returns:
    `{'params', 'batch_stats'}` after adaptation (float32 pytrees, on the default device).

  Raises:
    ValueError: fewer than 2 images, a MOS count or range problem, bad steps/batch_size.
    ImageReadError: a support file cannot be read (names it).
  """
  if isinstance(variables, quality_model.QualityModel):
    return variables.adapt((support, support_mos) if support_mos is not None else support,
                           steps=steps, lr=lr, seed=seed).variables
  support_images, support_mos = support_pair(support, support_mos)
  if model is not None and head_only_trains(model):
    inputs = inputs or InputSpec(image_size, resize_to=round(image_size * 256 / 224))
    count = len(support_images)
    if count < 2:
      raise ValueError(f'adapt needs at least 2 support images, got {count}')
    mos = _check_mos(support_mos, count)
    features = support_features(model, variables, support_images, inputs)
    return adapt_head(model, variables, features, mos, steps=HEAD_STEPS if steps is None else steps,
                      lr=HEAD_LR if lr is None else lr, seed=seed)
  steps = 20 if steps is None else steps
  lr = 1e-4 if lr is None else lr
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
  # Copies: the steps donate them, and `variables` stays the caller's.
  params, batch_stats = jax.tree.map(jnp.array, (variables['params'], variables['batch_stats']))
  mask = meta.adapt_mask(params, adapt)
  tx = optim.make_optimizer(lr=lr, head_lr=head_lr)

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))  # In place, as `_head_step`.
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

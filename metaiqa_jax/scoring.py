"""Batch quality prediction for images or files with a MetaIQA model (eval mode, jitted)."""

import functools
import os
from typing import Any, Callable, Optional

import jax
import numpy as np
import tqdm

from metaiqa_jax.images import ImageReadError
from metaiqa_jax.models.metaiqa import (MetaIQA, ModelConfig, infer_model_config,
                                        model_config)
from metaiqa_jax.preprocess import (READ_MAX_SIDE, InputSpec, eval_crops, eval_transform,
                                   load_image)

# Multi-crop scoring resizes to image_size * 256 / 224 before cropping, as the 256 -> 224 train
# crops do.
_CROP_CONTEXT = 256 / 224


@functools.lru_cache(maxsize=8)
def _predict_fn(config: ModelConfig, dtype: Any, conv_impl: Optional[str]) -> Callable:
  """`predict(variables, x (B, H, W, 3)) -> (B,)`, jitted once per model and input shape.

  Forward passes only (grad_order 0): with 'auto' convolutions (the CPU default) each layer
  runs in the form that is faster forward (`layers.choose_conv_impl`).
  """
  model = config.create(dtype, conv_impl, grad_order=0)
  return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def _model_inputs(image: np.ndarray, image_size: int, n_crops: int,
                  inputs: Optional[InputSpec]) -> np.ndarray:
  """`(views, image_size, image_size, 3)` float32 for one image."""
  if inputs is not None:
    return inputs.eval(image)
  if n_crops == 1:
    return eval_transform(image, image_size)[None]
  return eval_crops(image, n_crops, int(round(image_size * _CROP_CONTEXT)), image_size)


def score(variables, images_or_paths, *, model: Optional[MetaIQA] = None, batch_size: int = 32,
          image_size: int = 224, n_crops: int = 1, inputs: Optional[InputSpec] = None,
          max_side: Optional[int] = READ_MAX_SIDE,
          on_error: Optional[Callable[[ImageReadError], None]] = None,
          progress: bool = False) -> np.ndarray:
  """Predicted quality of each image, in (0, 1) (higher is better).

  Every batch has the same shape (the last one is zero-padded and the padding discarded), so
  the model compiles once per (model, batch, image size). Host preprocessing of the next batch
  overlaps with the device computing the current one.

  Args:
    variables: `{'params', 'batch_stats'}` of a MetaIQA model (from `init_variables`,
      `load_torch_weights` or a checkpoint).
    images_or_paths: sequence of uint8/float `(H, W, 3)` arrays and/or image file paths.
    model: the `MetaIQA` module (its dtype and `conv_impl` are used); None: built from the
      variables' shapes (`infer_model_config`).
    batch_size: images per device call (crops multiply it).
    image_size: model input side, pixels (224 in the paper).
    n_crops: 1: the whole image resized (the authors' test protocol); 2..10: the mean over
      `preprocess.eval_crops` of the image resized to `image_size * 256 / 224`.
    inputs: how the model was trained to see images (`preprocess.InputSpec`, e.g.
      `checkpoints.stored_inputs(run_dir)`): its evaluation views, averaged. Given, it replaces
      `image_size` and `n_crops`.
    max_side: decoding limit for files (`preprocess.load_image`).
    on_error: None: an unreadable file raises `ImageReadError`. A callable: it receives the
      error and the file's score is NaN.
    progress: show a tqdm progress bar (on stderr).

  Returns:
    float32 `(N,)` scores in input order.
  """
  if isinstance(images_or_paths, (str, os.PathLike)):
    images_or_paths = [images_or_paths]
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if model is None:
    config, dtype, conv_impl = infer_model_config(variables), jax.numpy.float32, None
  else:
    config, dtype, conv_impl = model_config(model), model.dtype, model.conv_impl
  predict = _predict_fn(config, dtype, conv_impl)
  if inputs is not None:
    image_size, n_crops = inputs.image_size, inputs.num_views
  variables = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
  count = len(images_or_paths)
  rows = min(batch_size, max(count, 1))
  scores = np.full(count, np.nan, np.float32)
  pending = []  # (indices of the batch's images, device result) for results still in flight.
  bar = tqdm.tqdm(total=count, unit='img', disable=not progress)
  for start in range(0, count, rows):
    batch = np.zeros((rows, n_crops, image_size, image_size, 3), np.float32)
    indices = []
    for i in range(start, min(start + rows, count)):
      try:
        image = load_image(images_or_paths[i], max_side)
      except ImageReadError as e:
        if on_error is None:
          raise
        on_error(e)
        continue
      batch[len(indices)] = _model_inputs(image, image_size, n_crops, inputs)
      indices.append(i)
    if indices:
      flat = batch.reshape(rows * n_crops, image_size, image_size, 3)
      pending.append((indices, predict(variables, flat)))
    bar.update(min(start + rows, count) - start)
  bar.close()
  for indices, result in pending:
    per_crop = np.asarray(result, np.float32).reshape(rows, n_crops)
    scores[indices] = per_crop[:len(indices)].mean(axis=1)
  return scores

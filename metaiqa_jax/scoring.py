"""Batch quality prediction for images or files with a MetaIQA model (eval mode, jitted)."""

import collections
import concurrent.futures
import functools
import os
from typing import Any, Callable, Optional

import jax
import numpy as np
import tqdm

from metaiqa_jax.images import ImageReadError
from metaiqa_jax.models import backbones
from metaiqa_jax.models.metaiqa import (MetaIQA, ModelConfig, infer_model_config,
                                        model_config)
from metaiqa_jax.preprocess import (READ_MAX_SIDE, InputSpec, eval_crops, eval_transform,
                                   load_image)

# Model inputs per device call by default (`default_batch_size`), by platform.
BATCH_SIZES = {'cpu': 2}
BATCH_SIZE = 32  # elsewhere
# Threads decoding and preprocessing images while the device computes (Pillow's decoders and
# numpy release the GIL); at most this many device calls' images are prepared ahead.
DECODE_THREADS = min(4, os.cpu_count() or 1)
_LOOKAHEAD_CALLS = 2
# Multi-crop scoring resizes to image_size * 256 / 224 before cropping, as the 256 -> 224 train
# crops do.
_CROP_CONTEXT = 256 / 224


@functools.lru_cache(maxsize=8)
def _predict_fn(config: ModelConfig, dtype: Any, conv_impl: Optional[str],
                fold: bool = True) -> tuple[Callable, Callable]:
  """(`prepare(variables) -> scoring variables`, `predict(scoring variables, x (B, H, W, 3)) ->
  (B,)`), the latter jitted once per model and input shape; `prepare` (host arrays) once per
  call of `score`.

  Forward passes only (grad_order 0): with 'auto' convolutions (the CPU default) each layer
  runs in the form that is faster forward (`layers.choose_conv_impl`). With `fold`, a backbone
  that can (`backbones.Backbone.folded`: EfficientNet-Lite) runs with its BatchNorms folded into
  its convolutions; the head reads its features (`MetaIQA.from_features`).
  """
  model = config.create(dtype, conv_impl, grad_order=0)
  folded = backbones.get(config.arch).folded if fold else None
  if folded is None:
    return (lambda variables: variables,
            jax.jit(lambda variables, x: model.apply(variables, x, train=False)))
  backbone, fold_variables = folded(config.num_classes, config.head_input, dtype, conv_impl)

  def prepare(variables):
    return {'backbone': fold_variables({c: variables[c]['backbone'] for c in variables}),
            'head': {c: {'head': variables[c]['head']} for c in variables}}

  def predict(variables, x):
    features = backbone.apply(variables['backbone'], x, False)
    return model.apply(variables['head'], features, method=MetaIQA.from_features)
  return prepare, jax.jit(predict)


def default_batch_size(platform: Optional[str] = None) -> int:
  """Model inputs per device call of `score` when it is given none: 2 on CPU, where calls that
  small keep a call's activations in the CPU's caches (EfficientNet-Lite0 at 224 px: 112 x 112
  x 96 float32 per input, 4.8 MB, after its first expansion; BENCHMARKS.md, section 9, times
  calls of 1 to 288 inputs); `BATCH_SIZE` elsewhere (accelerators want large calls)."""
  platform = jax.default_backend() if platform is None else platform
  return BATCH_SIZES.get(platform, BATCH_SIZE)


def _model_inputs(image: np.ndarray, image_size: int, n_crops: int,
                  inputs: Optional[InputSpec]) -> np.ndarray:
  """`(views, image_size, image_size, 3)` float32 for one image."""
  if inputs is not None:
    return inputs.eval(image)
  if n_crops == 1:
    return eval_transform(image, image_size)[None]
  return eval_crops(image, n_crops, int(round(image_size * _CROP_CONTEXT)), image_size)


def score(variables, images_or_paths, *, model: Optional[MetaIQA] = None,
          batch_size: Optional[int] = None, image_size: int = 224, n_crops: int = 1,
          inputs: Optional[InputSpec] = None, max_side: Optional[int] = READ_MAX_SIDE,
          on_error: Optional[Callable[[ImageReadError], None]] = None,
          progress: bool = False) -> np.ndarray:
  """Predicted quality of each image, in (0, 1) (higher is better).

  The model inputs of all images (each image's views, in order) are scored `batch_size` per
  device call; every call has the same shape (the last one is zero-padded and the padding
  discarded), so the model compiles once per (model, batch, image size). Threads decode and
  preprocess the images ahead (`DECODE_THREADS`, at most `_LOOKAHEAD_CALLS` calls ahead) while
  the device computes.

  Args:
    variables: `{'params', 'batch_stats'}` of a MetaIQA model (from `init_variables`,
      `load_torch_weights` or a checkpoint).
    images_or_paths: sequence of uint8/float `(H, W, 3)` arrays and/or image file paths.
    model: the `MetaIQA` module (its dtype and `conv_impl` are used); None: built from the
      variables' shapes (`infer_model_config`).
    batch_size: model inputs per device call (an image's views count one each and may span
      two calls); None: `default_batch_size()`.
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
  batch_size = default_batch_size() if batch_size is None else batch_size
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if model is None:
    config, dtype, conv_impl = infer_model_config(variables), jax.numpy.float32, None
  else:
    config, dtype, conv_impl = model_config(model), model.dtype, model.conv_impl
  prepare, predict = _predict_fn(config, dtype, conv_impl)
  if inputs is not None:
    image_size, n_crops = inputs.image_size, inputs.num_views
  # On the device once, not converted from host arrays at every call.
  variables = jax.device_put(prepare({'params': variables['params'],
                                      'batch_stats': variables['batch_stats']}))
  count = len(images_or_paths)
  per_call = min(batch_size, max(count, 1) * n_crops)  # model inputs per device call
  read = []  # indices of the images read, in order
  results = []  # device results, (per_call,) each, still in flight
  buffer, filled = np.zeros((per_call, image_size, image_size, 3), np.float32), 0

  def load(i):
    try:
      return _model_inputs(load_image(images_or_paths[i], max_side), image_size, n_crops, inputs)
    except ImageReadError as e:
      return e

  bar = tqdm.tqdm(total=count, unit='img', disable=not progress)
  lookahead = _LOOKAHEAD_CALLS * -(-per_call // n_crops) + DECODE_THREADS
  with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool:
    for i, views in enumerate(_in_order(pool, load, count, lookahead)):
      bar.update()
      if isinstance(views, ImageReadError):
        if on_error is None:
          raise views
        on_error(views)
        continue
      read.append(i)
      while len(views):
        taken = views[:per_call - filled]
        buffer[filled:filled + len(taken)] = taken
        filled, views = filled + len(taken), views[len(taken):]
        if filled == per_call:
          results.append(predict(variables, buffer))
          # A fresh buffer: the call may still be reading this one.
          buffer, filled = np.zeros_like(buffer), 0
    if filled:
      results.append(predict(variables, buffer))
  bar.close()
  scores = np.full(count, np.nan, np.float32)
  if read:
    per_view = np.concatenate([np.asarray(r, np.float32) for r in results])
    scores[read] = per_view[:len(read) * n_crops].reshape(len(read), n_crops).mean(axis=1)
  return scores


def _in_order(pool, fn, count: int, lookahead: int):
  """`fn(0), ..., fn(count - 1)` computed by `pool`, yielded in order, at most `lookahead`
  submitted ahead of the one being yielded (bounding the memory of prepared inputs)."""
  futures = collections.deque()
  for i in range(count):
    futures.append(pool.submit(fn, i))
    if len(futures) > lookahead:
      yield futures.popleft().result()
  while futures:
    yield futures.popleft().result()

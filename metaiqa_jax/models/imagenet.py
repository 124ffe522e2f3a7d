"""`imagenet_logits`: the ImageNet classifier inside a backbone's installed weights, as a check
that they load exactly (and as a plain ImageNet classifier)."""

import functools
from typing import Callable

import jax
import numpy as np

from metaiqa_jax.models.metaiqa import create_model
from metaiqa_jax.preprocess import normalize


@functools.lru_cache(maxsize=4)
def _classifier(name: str) -> tuple[Callable, dict]:
  """(jitted `logits(variables, x)`, ImageNet variables) of backbone `name`, loaded once."""
  from metaiqa_jax.weights import imagenet  # pylint: disable=g-import-not-at-top  (weights import models)
  model = create_model(name, head_input='logits', head_features=(), dropout_rate=0.0,
                       grad_order=0)
  variables = imagenet.imagenet_variables(model)
  backbone = lambda module, x: module.backbone(x, False)
  return jax.jit(lambda v, x: model.apply(v, x, method=backbone)), variables


def imagenet_logits(images: np.ndarray, name: str = 'efficientnet_lite0',
                    batch_size: int = 32) -> np.ndarray:
  """ImageNet logits of uint8 RGB images under the installed weights of backbone `name`.

  The model's own input convention is applied inside (EfficientNet-Lite: `(x - 127) / 128`),
  so `images` are plain pixels. Runs on JAX's default device, in batches of `batch_size`.

  Args:
    images: uint8 `(N, 224, 224, 3)` RGB (any H, W work: the network pools globally).
    name: a backbone with installable ImageNet weights (`models.BACKBONES`, e.g.
      'efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2').
    batch_size: images per device call.

  Returns:
    float32 `(N, 1000)` logits, in the order of ImageNet-1k's class indices.

  Raises:
    ValueError: `images` is not a uint8 `(N, H, W, 3)` array.
    weights.imagenet.ImageNetWeightsError: the weights are not installed (names the package).
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be uint8 (N, H, W, 3) RGB; got {images.dtype} '
                     f'{images.shape}')
  logits_fn, variables = _classifier(name)
  out = [np.asarray(logits_fn(variables, normalize(images[i:i + batch_size] / 255.0)))
         for i in range(0, len(images), batch_size)]
  return np.concatenate(out) if out else np.zeros((0, 1000), np.float32)

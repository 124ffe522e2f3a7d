"""Pieces every program shares: errors, sources, input spec, provenance, devices."""

import concurrent.futures
import contextlib
import logging
import os
import platform
import shlex
import socket
import sys
import time
from typing import Optional

import jax
import ml_collections

import metaiqa_jax
from metaiqa_jax import configlib, preprocess
from metaiqa_jax.data import make_source

class Preempted(RuntimeError):
  """SIGTERM arrived. In a training loop the state after the step in flight was checkpointed
  (the message says which step and where); elsewhere the run stopped where it was."""


class NonFiniteLossError(FloatingPointError):
  """A training loss became NaN or Inf; the message names the step and the last good checkpoint."""


class DatasetError(ValueError):
  """A dataset named by the config does not read (a malformed label table, a bad value); the
  message names the config key, the source and the file line."""


def open_source(name: str, root: str, config_key: str, **kwargs):
  """`data.make_source(name, root or None, **kwargs)`, its label-table errors as `DatasetError`.

  Args:
    config_key: the config keys that named the source (for the message), e.g.
      `'config.finetune.source'`.

  Raises:
    DatasetError: the reader refused the label table (its message names the file and line).
    FileNotFoundError: the label table or image files are missing.
  """
  try:
    return make_source(name, root or None, **kwargs)
  except ValueError as e:
    raise DatasetError(f'{config_key} {name!r} (root {root!r}): {e}') from e


def input_spec(data_config: ml_collections.ConfigDict) -> preprocess.InputSpec:
  """The `data` section's input pipeline (`image_size`, `resize_to`, `eval_grid`,
  `fragments`).

  Raises:
    configlib.ConfigError: the combination is impossible (names the keys).
  """
  try:
    return preprocess.InputSpec(data_config.image_size, data_config.resize_to,
                                data_config.eval_grid, data_config.fragments)
  except ValueError as e:
    raise configlib.ConfigError(
        f'config.data (image_size, resize_to, eval_grid, fragments): {e}') from e


def provenance(writer: str, config: ml_collections.ConfigDict) -> dict:
  """What a checkpoint records about how it was made: the training function `writer` (e.g.
  'meta_train', 'finetune'), the command line, the whole config and the package version."""
  return {'writer': writer, 'command': shlex.join(sys.argv), 'config': config.to_dict(),
          'package_version': metaiqa_jax.__version__}


def machine() -> dict:
  """Where a run's figures come from: `{'cpu', 'cores', 'devices', 'jax'}` (the CPU model from
  /proc/cpuinfo where there is one, else `platform.processor()`; the device kind and count).

  XLA compiles for the host's vector units, so float rounding, and with it a trained model's
  figures in the last digits or more, can differ between CPU models; on one model they repeat.
  """
  cpu = platform.processor() or platform.machine()
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                 cpu)
  devices = jax.devices()
  return {'cpu': cpu, 'cores': os.cpu_count(),
          'devices': f'{len(devices)} x {devices[0].device_kind}', 'jax': jax.__version__}


class DistributedInitError(RuntimeError):
  """This process could not join its multi-process run (coordinator unreachable, or not every
  process arrived in time); the message names the coordinator, the process and the count."""


def _wait_for_coordinator(address: str, process_id: int, num_processes: int,
                          timeout_s: float) -> None:
  """Returns once a TCP connection to `address` (host:port) succeeds, retrying for `timeout_s`.

  JAX aborts the whole process (a C++ check failure) when the coordinator cannot be reached, so
  this is tested first, where a clear error can still be raised.
  """
  host, _, port = address.rpartition(':')
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=1.0):
        return
    except (OSError, ValueError) as e:
      if time.monotonic() >= deadline:
        raise DistributedInitError(
            f'could not join the multi-process run (coordinator {address}, process {process_id} '
            f'of {num_processes}) within {timeout_s:g} s: the coordinator does not answer ({e}). '
            'Check that process 0 runs and that every process was given its address') from e
      time.sleep(0.2)


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None, timeout_s: int = 300) -> None:
  """Joins this process to its multi-process run (`jax.distributed.initialize`), once.

  With no arguments the cluster is detected from the environment (Cloud TPU VMs, Slurm, ...);
  otherwise all three name it (e.g. `launch/local_cluster.sh`). Collectives between CPU devices
  of different processes use gloo (the setting only affects the CPU backend). Call it before
  anything else touches a JAX backend.

  Raises:
    DistributedInitError: a named coordinator did not answer within `timeout_s` seconds. (When
      the coordinator answers but a process never joins, JAX itself ends every process after
      `timeout_s` with a DEADLINE_EXCEEDED check failure.)
  """
  if jax.distributed.is_initialized():
    return
  if coordinator_address and process_id:
    _wait_for_coordinator(coordinator_address, process_id, num_processes, timeout_s)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  logging.info('joining a run of %s processes (coordinator %s), waiting up to %d s',
               num_processes or 'auto-detected', coordinator_address or 'auto-detected',
               timeout_s)
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             initialization_timeout=int(timeout_s))


def maybe_initialize_distributed(distributed: bool) -> None:
  """`initialize_distributed()` (cluster detected from the environment) when asked and not done
  yet (the launch does it, with its flags, before taking the workdir lock); logs the topology."""
  if distributed:
    initialize_distributed()
  logging.info('process %d/%d, %d local / %d global devices (%s)', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.default_backend())


class Prefetcher:
  """`get(step)` returns `fn(step)` and starts computing `fn(step + 1)` in a background thread,
  so host-side batch preparation overlaps the device's work on the current step.

  `fn` must be a pure function of `step` (as `TaskSampler.sample` is): results do not depend on
  prefetching, and a resumed run asks for any step first.
  """

  def __init__(self, fn):
    self._fn = fn
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='prefetch')
    self._next = None

  def get(self, step: int):
    if self._next is not None and self._next[0] == step:
      value = self._next[1].result()
    else:
      value = self._fn(step)
    self._next = (step + 1, self._pool.submit(self._fn, step + 1))
    return value

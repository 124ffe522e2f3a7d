"""Joining a multi-process run (`jax.distributed`), with a clear error where JAX would abort.

`parallel` shards the work of a run over its devices and processes; this module starts the
processes' run: the coordinator wait, the CPU collectives setting and the topology log line.
"""

import logging
import socket
import time
from typing import Optional

import jax


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

"""Data parallelism: a 1-D device mesh, batches sharded along their leading axis.

One code path runs on 1 CPU, 8 GPUs or a TPU pod. Meta-steps split the tasks of a meta-batch over
the devices of a `jax.sharding.Mesh` with one axis (`DEVICE_AXIS`); each device runs its share of
the tasks and the per-device means are averaged with `lax.pmean` (`mean_over_task_shards`).
Supervised steps and scoring shard the images of a batch the same way and let `jax.jit`
partition the computation (BatchNorm statistics then span the whole batch, as on one device).
`jax.pmap` is not used (it is in maintenance mode since JAX 0.8 and is itself `jit(shard_map)`).

Multi-host: call `jax.distributed.initialize()` first; `make_mesh()` then spans every process's
devices. Each process loads only its contiguous share of a batch (`process_share`);
`put_sharded` assembles the shares into one global array and `gather_shares` brings host-side
arrays of every process back to all of them.

The mesh axis is named `'devices'`. No BatchNorm in this package has an `axis_name`, and none must
ever be given this one: inside a meta-step's `shard_map` batch statistics are per task, never
pooled across devices. (Supervised steps need no axis name: outside `shard_map`, `jax.jit`
computes a BatchNorm mean over the sharded batch axis as over the whole batch.)
"""

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DEVICE_AXIS = 'devices'


def make_mesh(devices: Sequence[jax.Device] | None = None,
              axis_name: str = DEVICE_AXIS) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError('make_mesh needs at least one device')
  return Mesh(np.asarray(devices), (axis_name,))


def mesh_axis(mesh: Mesh) -> str:
  """The name of the single axis of a 1-D mesh; raises ValueError for other meshes."""
  if len(mesh.axis_names) != 1:
    raise ValueError(f'the task axis is sharded over a 1-D mesh; got axes {mesh.axis_names}')
  return mesh.axis_names[0]


def check_even_split(num_local: int, mesh: Mesh, what: str = 'tasks',
                     batch: str = 'the meta-batch') -> None:
  """Raises ValueError unless a batch splits evenly over the devices of `mesh`.

  `num_local` is this process's share of the batch's `what` (the whole batch on one host);
  every process is assumed to pass the same number, as `put_sharded` requires.
  """
  total = num_local * jax.process_count()
  if total < 1 or total % mesh.size:
    raise ValueError(f'{batch} has {total} {what}, which cannot be split evenly over '
                     f'{mesh.size} devices: use a multiple of {mesh.size} {what}')


def process_share(n: int) -> slice:
  """This process's contiguous share of a batch of `n` items (tasks, images), in process order."""
  count, index = jax.process_count(), jax.process_index()
  if n % count:
    raise ValueError(f'a batch of {n} cannot be split evenly over {count} processes')
  per = n // count
  return slice(index * per, (index + 1) * per)


def put_sharded(local: Any, mesh: Mesh) -> Any:
  """Places a pytree of arrays sharded along their leading axis (tasks, images) over the mesh.

  On one host the arrays are the whole batch; with several processes each process passes its
  own share (`process_share`) and gets back global arrays (`make_array_from_process_local_data`).
  """
  sharding = NamedSharding(mesh, P(mesh_axis(mesh)))
  if jax.process_count() == 1:
    return jax.device_put(local, sharding)
  return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)),
                      local)


def gather_shares(local: Any) -> Any:
  """Every process's numpy arrays concatenated along axis 0 in process order, on every process
  (the inverse of taking `process_share`s; a collective with several processes)."""
  if jax.process_count() == 1:
    return local
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                      local)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree replicated on every device of `mesh` (every process passes equal values).

  Leaves already replicated over `mesh` are returned as they are. On several processes a
  `device_put` cannot reach other processes' devices: each process contributes its own copy
  (`make_array_from_process_local_data`); PRNG key arrays travel as their key data.
  """
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(leaf):
    if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
      return leaf
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(leaf)),
                                      impl=jax.random.key_impl(leaf))
    return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
  return jax.tree.map(one, tree)


def any_process(flag: bool) -> bool:
  """True on every process when `flag` is True on any one (with several processes a collective
  that all of them must call at the same point)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def mean_over_task_shards(fn: Callable[[Any, Any], Any], mesh: Mesh) -> Callable[[Any, Any], Any]:
  """Runs `fn(replicated, per_task)` on each device's share of the tasks and averages.

  Args:
    fn: returns a pytree of per-device *means* over its tasks (losses, gradients, statistics).
    mesh: a 1-D mesh; `per_task` leaves are split along their leading axis over it.

  Returns:
    `g(replicated, per_task)`: the mean over devices of `fn`'s outputs, replicated. With equal
    task counts per device this is the mean over all tasks. Call it under `jax.jit`.
  """
  axis = mesh_axis(mesh)

  def local(replicated, per_task):
    return jax.lax.pmean(fn(replicated, per_task), axis)

  # Outputs are pmean'd, hence replicated; check_vma would also demand explicit pvary on the
  # inner-loop carries, which start replicated and become per-task.
  return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis)), out_specs=P(),
                       check_vma=False)

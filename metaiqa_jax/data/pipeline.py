"""grain input pipelines: fixed-shape numpy batches of (image, mos_norm, index) from any source.

`make_batches` holds the training batches (shuffle, decode, transform, batch) as a random-access
dataset, and `EpochBatches` reads them step by step for a training loop (optional worker
processes); `make_eval_loader` visits every index exactly once in order, padding the last batch
and marking real entries with `mask`; `Prefetcher` computes a loop's next batch while the
device runs the current step. With `shard=(index, count)` each yields only part
`index` of `count` contiguous parts of every batch (a process's share in a multi-process run);
the batches themselves, and the random crops, do not depend on `count`.
"""

import concurrent.futures
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

from absl import flags
import grain
import numpy as np

from metaiqa_jax import preprocess
from metaiqa_jax.data import views


class _Subset(views.Subset):
  """Records `indices` of `source`, each tagged with its source index (grain data source)."""

  def __init__(self, source, indices: Sequence[int]):
    super().__init__(source, indices)
    if len(self.indices) == 0:
      raise ValueError('indices must be a non-empty 1-D sequence, got none')

  def __getitem__(self, i: int) -> Dict:
    index = int(self.indices[i])
    record = self.source[index]
    return {'image': record['image'], 'mos_norm': record['mos_norm'], 'index': index}


def _finish(record: Dict, image: np.ndarray) -> Dict[str, np.ndarray]:
  return {'image': image, 'mos_norm': np.float32(record['mos_norm']),
          'index': np.int64(record['index'])}


def _iterate(ds: 'grain.MapDataset', worker_count: int) -> Iterator:
  it_ds = ds.to_iter_dataset()
  if worker_count > 0:
    # grain <= 0.2.18 reads an absl flag when starting workers once JAX is imported, which
    # fails outside absl.app before flags are parsed (google/grain#1355, fixed after 0.2.18).
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(it_ds)


def _part_of_every_batch(ds: 'grain.MapDataset', num_batches: int, batch_size: int,
                         shard: Tuple[int, int]) -> 'grain.MapDataset':
  """Part `shard[0]` of `shard[1]` of each of the first `num_batches` batches of `ds`, batched;
  only those elements are read."""
  index, count = shard
  if not 0 <= index < count or batch_size % count:
    raise ValueError(f'shard {index} of {count}: need 0 <= index < count and a batch size '
                     f'({batch_size}) divisible by the count')
  per = batch_size // count
  return (grain.MapDataset.range(num_batches * per)
          .map(lambda i: ds[(i // per) * batch_size + index * per + i % per])
          .batch(per))


def make_batches(source, indices: Sequence[int], *, batch_size: int,
                 inputs: preprocess.InputSpec, train: bool, seed: int | Sequence[int],
                 num_epochs: Optional[int] = None, shuffle: bool = True,
                 drop_remainder: Optional[bool] = None,
                 shard: Tuple[int, int] = (0, 1)) -> 'grain.MapDataset':
  """Random-access batches {'image': float32, 'mos_norm': (B,) float32, 'index': (B,) int64
  source indices}; 'image' is (B, S, S, 3) training crops (`inputs.train`) or with train=False
  (B, V, S, S, 3) evaluation views (`inputs.eval`). Batch i is read only when asked for.

  Args:
    source: random-access source; indices: which of its records to use.
    batch_size: B.
    inputs: how images become model inputs (S = inputs.image_size, V = inputs.num_views).
    train: True: one random training crop per image; False: the evaluation views.
    seed: seeds the shuffle (reshuffled every epoch) and the random crops; the order and the
      crops are a deterministic function of (seed, position in the stream). An int, or a path
      of ints naming the stream (e.g. `(seed, split, epoch)`).
    num_epochs: passes over `indices`; None repeats forever (then the batches have no length).
    shuffle: shuffle the order.
    drop_remainder: drop an incomplete last batch (default: `train`, keeping shapes fixed).
    shard: (index, count): yield part `index` of `count` of every batch (B / count images; needs
      drop_remainder).
  """
  drop_remainder = train if drop_remainder is None else drop_remainder
  if not isinstance(seed, (int, np.integer)):  # grain takes one integer: derive it from the path.
    seed = int(np.random.SeedSequence([int(s) for s in seed]).generate_state(1)[0])
  ds = grain.MapDataset.source(_Subset(source, indices))
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  if train:
    ds = ds.random_map(lambda r, rng: _finish(r, inputs.train(r['image'], rng)), seed=seed)
  else:
    ds = ds.map(lambda r: _finish(r, inputs.eval(r['image'])))
  if shard[1] == 1:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  elif not drop_remainder:
    raise ValueError('a loader sharded over processes needs drop_remainder (equal shares)')
  else:
    ds = _part_of_every_batch(ds, len(ds) // batch_size, batch_size, shard)
  return ds


class EpochBatches:
  """`batches(step)`: the training batch of `step` when every epoch has its own batches.

  Step s is batch `s % steps_per_epoch` of `make_epoch(s // steps_per_epoch)` (a `make_batches`
  dataset, so a pure function of the step). Consecutive steps are read as one stream, loaded
  by `worker_count` grain worker processes (0: in this process); any step may come first (a
  resumed run), and only the batches from there on are read.
  """

  def __init__(self, make_epoch: Callable[[int], 'grain.MapDataset'], steps_per_epoch: int,
               worker_count: int = 0):
    self._make_epoch = make_epoch
    self._steps_per_epoch = steps_per_epoch
    self._worker_count = worker_count
    self._stream, self._next_step = None, None

  def __call__(self, step: int) -> Dict[str, np.ndarray]:
    epoch, position = divmod(step, self._steps_per_epoch)
    if step != self._next_step or position == 0:
      batches = self._make_epoch(epoch)
      if len(batches) < self._steps_per_epoch:
        raise ValueError(f'epoch {epoch} has {len(batches)} batches, fewer than the '
                         f'{self._steps_per_epoch} steps an epoch takes')
      self._stream = _iterate(batches[position:self._steps_per_epoch], self._worker_count)
    self._next_step = step + 1
    return next(self._stream)


def make_eval_loader(source, indices: Sequence[int], *, batch_size: int,
                     inputs: preprocess.InputSpec, worker_count: int = 0,
                     shard: Tuple[int, int] = (0, 1)) -> Iterator[Dict[str, np.ndarray]]:
  """Every index once, in the given order, in fixed-shape batches.

  Yields dicts {'image': (B, V, S, S, 3) float32 (the evaluation views, `inputs.eval`),
  'mos_norm': (B,),
  'index': (B,) int64, 'mask': (B,) bool}; the last batch is padded by repeating the last
  index, with mask False on the padding. `shard=(index, count)`: part `index` of `count` of
  every batch (B / count entries each).
  """
  subset = _Subset(source, indices)
  n = len(subset)
  n_padded = -(-n // batch_size) * batch_size
  mask = np.arange(n_padded) < n

  def load(position: int) -> Dict[str, np.ndarray]:
    record = subset[position] if position < n else subset[n - 1]
    out = _finish(record, inputs.eval(record['image']))
    out['mask'] = mask[position]
    return out

  ds = grain.MapDataset.range(n_padded).map(load)
  ds = (ds.batch(batch_size) if shard[1] == 1
        else _part_of_every_batch(ds, n_padded // batch_size, batch_size, shard))
  return _iterate(ds, worker_count)


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

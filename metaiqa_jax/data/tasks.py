"""Per-distortion-type meta-learning tasks with reference-disjoint support and query sets.

`TaskSampler(source, ...).sample(step)` draws a meta-batch of `tasks_per_batch` tasks. Each task
is one distortion type; its support and query images come from disjoint sets of reference
contents (`ref_id`), so the query set measures adaptation to the distortion, not memorisation of
the scene. Which types form the batch is drawn per step (without replacement while there are
enough types). Everything is a deterministic function of (seed, step), so a resumed run
reproduces its data order from the step number alone, and the images of task t (its random
crops included) of (seed, step, t): a process of a multi-process run loads only its own tasks
(`sample(step, tasks=...)`) and the meta-batch is the same whatever the process count.
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from metaiqa_jax import preprocess
from metaiqa_jax.data import splits


class TaskSampler:
  """Draws `{'support': (x, y), 'query': (x, y)}` meta-batches from a source with dist_type.

  Args:
    source: random-access source (see `metaiqa_jax.data.base`) whose records have dist_type.
    types: distortion types to draw tasks from (default: every type >= 0 in the source).
    support_size, query_size: images per task in the support and query set.
    tasks_per_batch: tasks per meta-batch (leading axis).
    inputs: how images become model inputs (`preprocess.InputSpec`).
    seed: base seed, an int or a path of ints naming the stream (e.g. `(seed, 1)`).
    train: True: one random training crop per image (`inputs.train`); False: the evaluation
      views of each image (`inputs.eval`).

  Images are sampled without replacement within a set while its references hold enough images,
  with replacement otherwise.
  """

  def __init__(self, source, *, types: Optional[Sequence[int]] = None, support_size: int,
               query_size: int, tasks_per_batch: int, inputs: preprocess.InputSpec,
               seed: int | Sequence[int] = 0, train: bool = True):
    for name, value in (('support_size', support_size), ('query_size', query_size),
                        ('tasks_per_batch', tasks_per_batch)):
      if int(value) < 1:
        raise ValueError(f'{name} must be >= 1, got {value}')
    self.source = source
    self.support_size, self.query_size = int(support_size), int(query_size)
    self.tasks_per_batch, self.inputs = int(tasks_per_batch), inputs
    self.seed = tuple(int(s) for s in np.atleast_1d(seed))
    self.train = bool(train)
    meta = source.metadata()
    dist_type = np.asarray(meta['dist_type'])
    self._mos_norm = np.asarray(meta['mos_norm'], np.float32)
    groups = splits.reference_groups(meta['ref_id'])
    available = sorted(int(t) for t in np.unique(dist_type[dist_type >= 0]))
    if types is None:
      types = available
    types = tuple(sorted(int(t) for t in types))
    if not types:
      raise ValueError('the source has no synthetic distortion types (every dist_type is -1); '
                       'tasks need a source such as KADID-10k, TID2013 or SyntheticBank')
    absent = [t for t in types if t not in available]
    if absent:
      raise ValueError(f'distortion types {absent} have no images in the source (it has '
                       f'{available})')
    self.types = types
    # Per type: (unique reference ids, list of index arrays, one per reference).
    self._by_type = {}
    for t in types:
      idx = np.flatnonzero(dist_type == t)
      refs, inverse = np.unique(groups[idx], return_inverse=True)
      if len(refs) < 2:
        raise ValueError(f'distortion type {t} has images of only {len(refs)} reference '
                         'content(s); support and query need at least 2 disjoint references')
      self._by_type[t] = [idx[inverse == k] for k in range(len(refs))]

  def _draw_set(self, rng: np.random.Generator, per_ref: Sequence[np.ndarray],
                size: int) -> np.ndarray:
    pool = np.concatenate(per_ref)
    return rng.choice(pool, size, replace=size > len(pool))

  def plan(self, step: int) -> Dict[str, np.ndarray]:
    """Which records form meta-batch `step`: dict of int64 arrays
    types (tasks,), support (tasks, support_size), query (tasks, query_size) source indices."""
    rng = np.random.default_rng([*self.seed, int(step), 0])
    types = rng.choice(np.array(self.types), self.tasks_per_batch,
                       replace=self.tasks_per_batch > len(self.types))
    support, query = [], []
    frac = self.support_size / (self.support_size + self.query_size)
    for t in types:
      per_ref = self._by_type[int(t)]
      order = rng.permutation(len(per_ref))
      n_support_refs = int(np.clip(round(len(per_ref) * frac), 1, len(per_ref) - 1))
      support.append(self._draw_set(rng, [per_ref[k] for k in order[:n_support_refs]],
                                    self.support_size))
      query.append(self._draw_set(rng, [per_ref[k] for k in order[n_support_refs:]],
                                  self.query_size))
    return {'types': types.astype(np.int64), 'support': np.stack(support).astype(np.int64),
            'query': np.stack(query).astype(np.int64)}

  def _images(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = self.inputs.image_size
    views = () if self.train else (self.inputs.num_views,)
    out = np.empty(indices.shape + views + (size, size, 3), np.float32)
    for pos in np.ndindex(indices.shape):
      image = self.source[int(indices[pos])]['image']
      out[pos] = self.inputs.train(image, rng) if self.train else self.inputs.eval(image)
    return out

  def sample(self, step: int,
             tasks: slice = slice(None)) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Meta-batch `step`, or its tasks `tasks` (a slice of 0..tasks_per_batch-1; only their
    images are loaded): {'support': (x, y), 'query': (x, y)}, numpy float32, y (tasks, n)
    mos_norm, x ImageNet-normalised: (tasks, n, S, S, 3) training crops, or with train=False
    (tasks, n, V, S, S, 3), the V = `inputs.num_views` evaluation views of each image."""
    plan = self.plan(step)
    chosen = range(self.tasks_per_batch)[tasks]
    support, query = [], []
    for t in chosen:
      rng = np.random.default_rng([*self.seed, int(step), 1, t])
      support.append(self._images(plan['support'][t], rng))
      query.append(self._images(plan['query'][t], rng))
    rows = np.asarray(chosen, np.int64)
    return {'support': (np.stack(support), self._mos_norm[plan['support'][rows]]),
            'query': (np.stack(query), self._mos_norm[plan['query'][rows]])}

"""Evaluation splits: leave-one-distortion-out type splits and N random train/val/test splits.

`make_splits` keeps reference content on one side: records sharing a `ref_id` (>= 0) always land
in the same part; records without a known reference (ref_id -1, authentic sets) are split by
image. Splits are saved as JSON so that runs (and other codebases) compare on the same images.
"""

import json
import os
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from metaiqa_jax import storage

SPLIT_PARTS = ('train', 'val', 'test')
_FORMAT_VERSION = 1


def lodo_split(types: Iterable[int],
               held_out: Union[int, Iterable[int]]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
  """Leave-distortion-out: (train_types, test_types), both sorted tuples.

  Args:
    types: all distortion types.
    held_out: one type or several, each of which must be in `types`.
  """
  types = sorted({int(t) for t in types})
  held = sorted({int(held_out)} if np.isscalar(held_out) else {int(t) for t in held_out})
  unknown = [t for t in held if t not in types]
  if unknown:
    raise ValueError(f'held-out types {unknown} are not among the types {types}')
  train = tuple(t for t in types if t not in held)
  if not train:
    raise ValueError('holding out every type leaves nothing to train on')
  return train, tuple(held)


def reference_groups(ref_id) -> np.ndarray:
  """One group id per record: its `ref_id` where known (>= 0); a record of unknown reference
  (-1, authentic images) is its own group, `-2 - index`. int64, the shape of `ref_id`."""
  groups = np.asarray(ref_id, np.int64).copy()
  unknown = groups < 0
  groups[unknown] = -2 - np.flatnonzero(unknown)
  return groups


def _ref_ids(metadata_or_source) -> np.ndarray:
  meta = (metadata_or_source if isinstance(metadata_or_source, dict)
          else metadata_or_source.metadata())
  if 'ref_id' not in meta:
    raise ValueError('make_splits needs metadata with a ref_id array')
  return np.asarray(meta['ref_id'], np.int64)


def make_splits(metadata_or_source, n_splits: int = 10, *, test_fraction: float = 0.2,
                val_fraction: float = 0.1, seed: int = 0) -> List[Dict[str, np.ndarray]]:
  """`n_splits` random train/val/test splits, disjoint by reference content.

  Fractions are of the reference groups (images when references are unknown) of the whole set;
  the default is the literature's 80/20 train/test with a tenth of the whole taken from the
  training part for validation (70/10/20). Split k depends only on (seed, k).

  Returns:
    list of dicts with 'train', 'val', 'test': sorted int64 record indices.
  """
  if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
    raise ValueError(f'need 0 < test_fraction, 0 <= val_fraction and their sum < 1; got '
                     f'{test_fraction}, {val_fraction}')
  groups = reference_groups(_ref_ids(metadata_or_source))
  unique, inverse = np.unique(groups, return_inverse=True)
  n = len(unique)
  n_test = max(1, round(n * test_fraction))
  n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
  if n - n_test - n_val < 1:
    raise ValueError(f'{n} reference groups are too few for test_fraction={test_fraction}, '
                     f'val_fraction={val_fraction}')
  splits = []
  for k in range(int(n_splits)):
    order = np.random.default_rng([int(seed), k]).permutation(n)
    part_of_group = np.empty(n, np.int64)
    part_of_group[order[:n_test]] = 2
    part_of_group[order[n_test:n_test + n_val]] = 1
    part_of_group[order[n_test + n_val:]] = 0
    part = part_of_group[inverse]
    splits.append({name: np.flatnonzero(part == p) for p, name in
                   ((0, 'train'), (1, 'val'), (2, 'test'))})
  return splits


def save_splits(path, splits: Sequence[Dict[str, np.ndarray]]) -> None:
  """Writes splits as JSON: {"version": 1, "splits": [{"train": [...], "val": [...],
  "test": [...]}, ...]} (source record indices)."""
  payload = {'version': _FORMAT_VERSION,
             'splits': [{p: [int(i) for i in s[p]] for p in SPLIT_PARTS} for s in splits]}
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  # Atomic: the other processes of a multi-process run may read the file while it is written.
  storage.atomic_write_text(os.fspath(path), json.dumps(payload))


def load_splits(path) -> List[Dict[str, np.ndarray]]:
  """Reads splits written by `save_splits` (int64 index arrays)."""
  with open(path) as f:
    payload = json.load(f)
  if not isinstance(payload, dict) or payload.get('version') != _FORMAT_VERSION:
    raise ValueError(f'{path}: not a splits file of version {_FORMAT_VERSION}')
  out = []
  for k, s in enumerate(payload['splits']):
    missing = [p for p in SPLIT_PARTS if p not in s]
    if missing:
      raise ValueError(f'{path}: split {k} lacks {missing}')
    out.append({p: np.asarray(s[p], np.int64) for p in SPLIT_PARTS})
  return out

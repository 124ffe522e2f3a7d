"""Views over sources: a subset of records, and several sources as one.

Both are random-access sources themselves (`len`, `[i]`, `metadata()`), so task samplers,
loaders and splits work on them unchanged.
"""

from typing import Dict, Sequence

import numpy as np

# Distortion types of the k-th source of a `Concat` are shifted by k * TYPE_STRIDE, so TID2013's
# types stay 1..24 and KADID-10k's become 101..125 in a TID2013 + KADID-10k meta-training set.
TYPE_STRIDE = 100


class Subset:
  """Records `indices` of `source`, renumbered 0..len(indices)-1."""

  def __init__(self, source, indices: Sequence[int]):
    self.source = source
    self.indices = np.asarray(indices, np.int64)
    if self.indices.ndim != 1:
      raise ValueError(f'indices must be 1-D, got shape {self.indices.shape}')
    bad = (self.indices < 0) | (self.indices >= len(source))
    if bad.any():
      raise IndexError(f'indices {self.indices[bad][:5].tolist()} out of range for a source of '
                       f'{len(source)} records')

  def __len__(self) -> int:
    return len(self.indices)

  def metadata(self) -> Dict[str, np.ndarray]:
    return {k: v[self.indices] for k, v in self.source.metadata().items()}

  def __getitem__(self, index) -> Dict:
    return self.source[int(self.indices[index])]

  def __repr__(self) -> str:
    return f'Subset({self.source!r}, {len(self)} records)'


class Concat:
  """Sources one after another. Source k's distortion types (>= 0) are shifted by
  k * TYPE_STRIDE and its reference ids (>= 0) by the sum of the earlier sources' largest id + 1,
  so tasks never mix datasets and references stay distinct. Names become `'k/name'`."""

  def __init__(self, sources: Sequence):
    if not sources:
      raise ValueError('Concat needs at least one source')
    self.sources = list(sources)
    self._starts = np.cumsum([0] + [len(s) for s in self.sources])
    parts, ref_offset = [], 0
    for k, source in enumerate(self.sources):
      meta = dict(source.metadata())
      dist_type, ref_id = np.asarray(meta['dist_type']), np.asarray(meta['ref_id'])
      meta['dist_type'] = np.where(dist_type >= 0, dist_type + k * TYPE_STRIDE, dist_type)
      meta['ref_id'] = np.where(ref_id >= 0, ref_id + ref_offset, ref_id)
      meta['name'] = np.array([f'{k}/{n}' for n in meta['name']])
      ref_offset += int(ref_id.max(initial=-1)) + 1
      parts.append(meta)
    self._meta = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    self._offset_fields = ('dist_type', 'ref_id', 'name')

  def __len__(self) -> int:
    return int(self._starts[-1])

  def metadata(self) -> Dict[str, np.ndarray]:
    return dict(self._meta)

  def __getitem__(self, index) -> Dict:
    index = int(index) % len(self)
    k = int(np.searchsorted(self._starts, index, side='right')) - 1
    record = dict(self.sources[k][index - int(self._starts[k])])
    for key in self._offset_fields:
      value = self._meta[key][index]
      record[key] = str(value) if key == 'name' else int(value)
    return record

  def __repr__(self) -> str:
    return f'Concat({self.sources!r})'

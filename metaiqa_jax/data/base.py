"""The random-access source contract shared by every dataset reader, and a file-backed base.

A source has `len(src)`, `src[i]` -> dict with
  image       (H, W, 3) uint8 RGB
  mos         float, the dataset's native scale
  mos_norm    float, the model's (0, 1) training scale (normalisation documented per dataset)
  dist_type   int, distortion type in the dataset's own numbering (-1 for authentic images)
  dist_level  int, distortion level (0 when none)
  ref_id      int, reference content (-1 when unknown)
  name        str
and `src.metadata()` -> dict of numpy arrays with the same keys except `image`, computed
without decoding any image.
"""

import os
from typing import Dict, Optional, Sequence

import numpy as np

from metaiqa_jax.io import read_image

METADATA_KEYS = ('mos', 'mos_norm', 'dist_type', 'dist_level', 'ref_id', 'name')
_SHOW_MISSING = 5


def check_files_exist(paths: Sequence[str], dataset: str) -> None:
  """Raises FileNotFoundError naming the first few missing files and how many are missing."""
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    shown = ', '.join(missing[:_SHOW_MISSING])
    more = f' and {len(missing) - _SHOW_MISSING} more' if len(missing) > _SHOW_MISSING else ''
    raise FileNotFoundError(f'{dataset}: {len(missing)} of {len(paths)} image files are '
                            f'missing: {shown}{more}')


def normalize_index(index, length: int) -> int:
  """Python-style index (negative allowed) -> 0..length-1, IndexError when out of range."""
  i = int(index)
  if not -length <= i < length:
    raise IndexError(f'index {index} out of range for a source of {length} records')
  return i % length


class FileSource:
  """A source whose records are image files plus a label table (all readers derive from it).

  Args:
    dataset: name used in error messages.
    paths: image file per record.
    mos, mos_norm: native and (0, 1) labels per record.
    dist_type, dist_level, ref_id: ints per record (see the module docstring for conventions).
    names: record names.
    max_side: if given, images are shrunk on read so their longer side is at most this (px).
  """

  def __init__(self, dataset: str, paths: Sequence[str], mos, mos_norm, dist_type, dist_level,
               ref_id, names: Sequence[str], max_side: Optional[int] = None):
    n = len(paths)
    if n == 0:
      raise ValueError(f'{dataset}: the label table lists no images')
    self.dataset = dataset
    self.max_side = max_side
    self._paths = list(paths)
    self._meta = {
        'mos': np.asarray(mos, np.float64),
        'mos_norm': np.asarray(mos_norm, np.float64),
        'dist_type': np.asarray(dist_type, np.int64),
        'dist_level': np.asarray(dist_level, np.int64),
        'ref_id': np.asarray(ref_id, np.int64),
        'name': np.asarray(names, dtype=str),
    }
    for key, value in self._meta.items():
      if value.shape != (n,):
        raise ValueError(f'{dataset}: {key} has shape {value.shape}, expected ({n},)')
      value.setflags(write=False)
    check_files_exist(self._paths, dataset)

  def __len__(self) -> int:
    return len(self._paths)

  def path(self, index) -> str:
    """The image file of record `index`."""
    return self._paths[normalize_index(index, len(self))]

  def metadata(self) -> Dict[str, np.ndarray]:
    """Labels of every record as read-only numpy arrays (no image is decoded)."""
    return dict(self._meta)

  def __getitem__(self, index) -> Dict:
    i = normalize_index(index, len(self))
    record = {k: v[i].item() if k != 'name' else str(v[i]) for k, v in self._meta.items()}
    record['image'] = read_image(self._paths[i], self.max_side)
    return record

  def __repr__(self) -> str:
    return f'{type(self).__name__}({len(self)} images)'

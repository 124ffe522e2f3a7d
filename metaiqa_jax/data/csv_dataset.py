"""Any IQA set described by a generic CSV `name,mos[,std]` plus an image folder (CID2013, ...).

The CSV follows the pyiqa `meta_info` convention: first column the image path relative to
`image_root`, second the MOS, optional third the std. A header row is detected (its second field
is not a number) and, if present, may also name columns `ref_id`, `dist_type`, `dist_level` for
synthetic sets; otherwise records are authentic (dist_type -1, dist_level 0, ref_id -1).

mos_norm = (mos - lo) / (hi - lo) with `mos_range=(lo, hi)`, the dataset's rating scale
(e.g. (0, 100) for CID2013, which make_source('cid2013') passes); with mos_range=None the file's
own minimum and maximum are used. Set `higher_is_better=False` for scales where lower is better
(DMOS): mos_norm is then 1 - that.
"""

import csv
import os
from typing import Optional, Tuple

import numpy as np

from metaiqa_jax.data.base import FileSource, parse_number

_OPTIONAL_INT_COLUMNS = {'ref_id': -1, 'dist_type': -1, 'dist_level': 0}


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


class CSVDataset(FileSource):
  """Images listed in a `name,mos[,std]` CSV."""

  def __init__(self, csv_path, image_root, *, mos_range: Optional[Tuple[float, float]] = None,
               higher_is_better: bool = True, dataset: Optional[str] = None, max_side=None):
    csv_path, image_root = os.fspath(csv_path), os.fspath(image_root)
    dataset = dataset or os.path.basename(csv_path)
    if not os.path.isfile(csv_path):
      raise FileNotFoundError(f'{dataset}: no label file {csv_path}')
    with open(csv_path, newline='') as f:
      rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
      raise ValueError(f'{csv_path} is empty')
    header = None
    if len(rows[0]) < 2 or not _is_number(rows[0][1]):
      header = [c.strip() for c in rows[0]]
      rows = rows[1:]
    names, mos, origins = [], [], []
    extra = {k: [] for k in _OPTIONAL_INT_COLUMNS if header and k in header}
    for line, row in enumerate(rows, start=2 if header else 1):
      origins.append(f'{csv_path}:{line}')
      if len(row) < 2:
        raise ValueError(f'{origins[-1]}: expected "name,mos[,std]", got {row}')
      names.append(row[0].strip())
      mos.append(parse_number(row[1], origins[-1], 'mos'))
      for key, values in extra.items():
        column = header.index(key)
        values.append(int(parse_number(row[column] if column < len(row) else None,
                                       origins[-1], key)))
    mos = np.asarray(mos, np.float64)
    # nanmin/nanmax: a NaN MOS is reported with its line by FileSource, not as a bad range.
    lo, hi = mos_range if mos_range is not None else (np.nanmin(mos), np.nanmax(mos))
    if not hi > lo:
      raise ValueError(f'{dataset}: mos_range must have hi > lo, got ({lo}, {hi})')
    mos_norm = (mos - lo) / (hi - lo)
    if not higher_is_better:
      mos_norm = 1.0 - mos_norm
    n = len(names)
    ints = {k: np.asarray(extra[k]) if k in extra else np.full(n, default)
            for k, default in _OPTIONAL_INT_COLUMNS.items()}
    paths = [os.path.join(image_root, name) for name in names]
    super().__init__(dataset, paths, mos, mos_norm, ints['dist_type'], ints['dist_level'],
                     ints['ref_id'], names, max_side, origins)

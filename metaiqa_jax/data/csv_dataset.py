"""Any IQA set described by a label table of image names and scores plus an image folder
(CID2013, pyiqa `meta_info` files, a KonIQ-10k CSV, ...).

The table may be comma-, tab-, semicolon- or whitespace-separated, UTF-8 with or without a BOM,
with any newline style (see `label_table`). With a header line, columns are found by name,
ignoring letter case:
  image name  the first of NAME_COLUMNS present (`image_name`, `name`, `file`, ...): the image
              path relative to `image_root` (letter case need not match the files on disk)
  score       the first of SCORE_COLUMNS present (`mos`, `mos_mean`, `dmos`, `score`, ...)
  ref_id, dist_type, dist_level   optional integers, for synthetic sets
A headerless table (its first line holds a number) has the name in column 1 and the score in
column 2. A log line says which columns were used. Records without ref_id/dist_type/dist_level
are authentic: dist_type -1, dist_level 0, ref_id -1.

mos_norm = (mos - lo) / (hi - lo) with `mos_range=(lo, hi)`, the dataset's rating scale
(e.g. (0, 100) for CID2013, which make_source('cid2013') passes); a score outside it is an error
naming its line. With mos_range=None the file's own minimum and maximum are used (nothing is
checked). Set `higher_is_better=False` for scales where lower is better (DMOS): mos_norm is then
1 - that.
"""

import logging
import os
from typing import Optional, Tuple

import numpy as np

from metaiqa_jax.data.base import FileSource, check_scale, resolve_paths
from metaiqa_jax.data.label_table import read_table

NAME_COLUMNS = ('image_name', 'img_name', 'dist_name', 'dist_img', 'image', 'img', 'name',
                'filename', 'file_name', 'file', 'image_path', 'path')
SCORE_COLUMNS = ('mos', 'mos_mean', 'dmos', 'score', 'mean_opinion_score', 'quality', 'rating')
_OPTIONAL_INT_COLUMNS = {'ref_id': -1, 'dist_type': -1, 'dist_level': 0}

logger = logging.getLogger(__name__)


class CSVDataset(FileSource):
  """Images listed in a label table with a name and a score column (see the module docstring)."""

  def __init__(self, csv_path, image_root, *, mos_range: Optional[Tuple[float, float]] = None,
               higher_is_better: bool = True, dataset: Optional[str] = None, max_side=None):
    csv_path, image_root = os.fspath(csv_path), os.fspath(image_root)
    dataset = dataset or os.path.basename(csv_path)
    if not os.path.isfile(csv_path):
      raise FileNotFoundError(f'{dataset}: no label file {csv_path}')
    table = read_table(csv_path)
    if table.header is None:
      columns = {'image name': 0, 'MOS': 1}
    else:
      columns = {'image name': table.column(NAME_COLUMNS, 'image name'),
                 'MOS': table.column(SCORE_COLUMNS, 'score')}
      columns.update({k: i for k in _OPTIONAL_INT_COLUMNS
                      if (i := table.find_column((k,))) is not None})
    names, mos, origins = [], [], []
    ints = {k: [] for k in _OPTIONAL_INT_COLUMNS if k in columns}
    for line, row in table.rows:
      origins.append(table.where(line))
      names.append(table.field(line, row, columns['image name'], 'image name'))
      mos.append(table.number(line, row, columns['MOS'], 'MOS'))
      for key, values in ints.items():
        values.append(int(table.number(line, row, columns[key], key)))
    mos = np.asarray(mos, np.float64)
    if mos_range is not None:
      lo, hi = mos_range
      if not hi > lo:
        raise ValueError(f'{dataset}: mos_range must have hi > lo, got ({lo}, {hi})')
      check_scale(mos, mos_range, origins, 'the rating scale given as mos_range')
    else:
      # nanmin/nanmax: a NaN MOS is reported with its line by FileSource, not as a bad range.
      lo, hi = np.nanmin(mos), np.nanmax(mos)
      if not hi > lo:
        raise ValueError(f'{dataset}: every MOS in {csv_path} is {lo}; pass mos_range=(lo, hi)')
    logger.info('%s: %s: %s; mos_norm from the scale %g..%g (%s)', dataset, csv_path,
                table.describe(columns), lo, hi,
                'mos_range' if mos_range is not None else "the file's own minimum..maximum")
    mos_norm = (mos - lo) / (hi - lo)
    if not higher_is_better:
      mos_norm = 1.0 - mos_norm
    n = len(names)
    ints = {k: np.asarray(ints[k]) if k in ints else np.full(n, default)
            for k, default in _OPTIONAL_INT_COLUMNS.items()}
    super().__init__(dataset, resolve_paths(image_root, names), mos, mos_norm, ints['dist_type'],
                     ints['dist_level'], ints['ref_id'], names, max_side, origins)

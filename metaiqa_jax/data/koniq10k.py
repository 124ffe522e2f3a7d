"""KonIQ-10k (Hosu, Lin, Sziranyi, Saupe, 2020) in its native layout, with either label file:

    <root>/koniq10k_distributions_sets.csv         image_name,c1..c5,c_total,MOS,SD,set
        MOS on 0..100; `set` is training | validation | test, the official split
        (7058 / 1000 / 2015 images)
    <root>/koniq10k_scores_and_distributions.csv   image_name,c1..c5,c_total,MOS,SD,MOS_zscore
        MOS on 1..5
    <root>/1024x768/<image_name>   (or <root>/512x384/; names matched ignoring letter case)

Unless a resolution is asked for, the images are read from 1024x768/, or from 512x384/ when
only that folder is there (a user who unpacked only the smaller zip).

The first of these two files present is read (the sets file first: only it carries the split);
which file it is fixes the MOS scale, and a MOS outside that scale is an error naming the line
(as is a sets file whose every MOS is at most 5, i.e. on the other file's scale). Either table
may be re-saved with a BOM, CRLF newlines or another delimiter (see `label_table`); columns are
found by name. The authors did not fine-tune on KonIQ-10k in their released code; we normalise
mos_norm = (MOS - lo) / (hi - lo), mapping the file's scale onto 0..1 exactly: MOS / 100 or
(MOS - 1) / 4 (higher is better). Authentic distortions: dist_type -1, dist_level 0, ref_id -1.
"""

import logging
import os
from typing import Dict, List, Optional

import numpy as np

from metaiqa_jax.data.base import FileSource, check_scale, resolve_paths
from metaiqa_jax.data.label_table import read_table

RESOLUTIONS = ('1024x768', '512x384')
SETS_CSV = 'koniq10k_distributions_sets.csv'
SCORES_CSV = 'koniq10k_scores_and_distributions.csv'
# Label file -> MOS scale (lo, hi); files in order of preference.
SCALES = {SETS_CSV: (0.0, 100.0), SCORES_CSV: (1.0, 5.0)}
# Values of the sets file's `set` column -> parts of a split (`metaiqa_jax.data.splits`).
SET_PARTS = {'training': 'train', 'validation': 'val', 'test': 'test'}

logger = logging.getLogger(__name__)


def available_resolution(root: str) -> str:
  """The first of `RESOLUTIONS` whose image folder is in `root` (the first if none is: the
  missing-files error then names it)."""
  present = [r for r in RESOLUTIONS if os.path.isdir(os.path.join(root, r))]
  if present and present[0] != RESOLUTIONS[0]:
    logger.info('KonIQ-10k: %s has no %s/ folder; reading the %s/ images', root, RESOLUTIONS[0],
                present[0])
  return (present or RESOLUTIONS)[0]


class KonIQ10k(FileSource):
  """The 10,073 KonIQ-10k images with their MOS (and the official split, from the sets file).

  Attributes:
    table: path of the label file read.
  """

  def __init__(self, root, resolution: Optional[str] = None, max_side=None):
    root = os.fspath(root)
    if resolution is None:
      resolution = available_resolution(root)
    if resolution not in RESOLUTIONS:
      raise ValueError(f'KonIQ-10k resolution must be one of {RESOLUTIONS}, got {resolution!r}')
    found = [f for f in SCALES if os.path.isfile(os.path.join(root, f))]
    if not found:
      raise FileNotFoundError(f'KonIQ-10k: neither {SETS_CSV} nor {SCORES_CSV} in {root}')
    self.table = os.path.join(root, found[0])
    scale = SCALES[found[0]]
    table = read_table(self.table, header=True)
    columns = {'image name': table.column(('image_name',), 'image name'),
               'MOS': table.column(('MOS',), 'MOS')}
    if found[0] == SETS_CSV:
      columns['set'] = table.column(('set',), 'set')
    logger.info('KonIQ-10k: %s: %s; MOS scale %g..%g', self.table, table.describe(columns),
                *scale)
    names, mos, parts, origins = [], [], [], []
    for line, row in table.rows:
      origins.append(table.where(line))
      names.append(table.field(line, row, columns['image name'], 'image_name'))
      mos.append(table.number(line, row, columns['MOS'], 'MOS'))
      if 'set' in columns:
        value = table.field(line, row, columns['set'], 'set').lower()
        if value not in SET_PARTS:
          raise ValueError(f'{origins[-1]}: set {value!r} is not one of {list(SET_PARTS)}')
        parts.append(SET_PARTS[value])
    mos = np.asarray(mos, np.float64)
    check_scale(mos, scale, origins, f'the MOS scale of {found[0]}')
    if found[0] == SETS_CSV and len(mos) and np.nanmax(mos) <= SCALES[SCORES_CSV][1]:
      raise ValueError(f'{self.table}: every MOS is at most 5, as on the 1..5 scale of '
                       f'{SCORES_CSV}, not the 0..100 scale of {SETS_CSV}')
    self._parts: Optional[np.ndarray] = np.asarray(parts) if 'set' in columns else None
    n = len(names)
    paths = resolve_paths(root, [f'{resolution}/{name}' for name in names])
    super().__init__('KonIQ-10k', paths, mos, (mos - scale[0]) / (scale[1] - scale[0]),
                     np.full(n, -1), np.zeros(n), np.full(n, -1), names, max_side, origins)

  def official_splits(self) -> Optional[List[Dict[str, np.ndarray]]]:
    """The official split as a one-element list of {'train', 'val', 'test'}: sorted int64 record
    indices (the `splits.make_splits` format), from the sets file's `set` column; None when
    the label file read has no split (the scores file)."""
    if self._parts is None:
      return None
    return [{part: np.flatnonzero(self._parts == part) for part in SET_PARTS.values()}]

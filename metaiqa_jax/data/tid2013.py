"""TID2013 (Ponomarenko et al., 2015) in its native layout.

    <root>/mos_with_names.txt     lines "5.51429 i01_01_1.bmp" (MOS 0..9, higher is better)
    <root>/distorted_images/      i01_01_1.bmp ... (file names mix i/I and .bmp/.BMP)
    <root>/reference_images/

mos_with_names.txt is read as distributed (CRLF newlines, mixed-case names) or re-saved (BOM,
LF, tab-separated; see `label_table`). Names are matched to files ignoring letter case. A MOS
outside 0..9 is an error naming its line. mos_norm = mos / 9 as in MetaIQA. dist_type is
TID2013's own numbering 1..24 (not KADID's), dist_level 1..5, ref_id 1..25.
"""

import os
import re

from metaiqa_jax.data.base import FileSource, check_scale, resolve_paths
from metaiqa_jax.data.label_table import read_table
from metaiqa_jax.data.labels import normalize_tid2013

SCALE = (0.0, 9.0)
_NAME = re.compile(r'^i(\d+)_(\d+)_(\d+)\.bmp$', re.IGNORECASE)


class TID2013(FileSource):
  """The 3,000 distorted TID2013 images with their MOS."""

  def __init__(self, root, max_side=None):
    root = os.fspath(root)
    table_path = os.path.join(root, 'mos_with_names.txt')
    if not os.path.isfile(table_path):
      raise FileNotFoundError(f'TID2013: no mos_with_names.txt in {root}')
    table = read_table(table_path, header=False)
    mos, types, levels, refs, names, origins = [], [], [], [], [], []
    for line, row in table.rows:
      match = _NAME.match(row[-1]) if len(row) == 2 else None
      if match is None:
        raise ValueError(f'{table.where(line)}: expected "<mos> iXX_YY_Z.bmp", got {row}')
      ref, dist_type, level = (int(g) for g in match.groups())
      names.append(row[1])
      origins.append(table.where(line))
      mos.append(table.number(line, row, 0, 'MOS'))
      types.append(dist_type)
      levels.append(level)
      refs.append(ref)
    check_scale(mos, SCALE, origins, "TID2013's MOS scale")
    paths = resolve_paths(root, [f'distorted_images/{name}' for name in names])
    super().__init__('TID2013', paths, mos, normalize_tid2013(mos), types, levels, refs, names,
                     max_side, origins)

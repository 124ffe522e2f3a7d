"""KADID-10k (Lin, Hosu, Saupe, QoMEX 2019) in its native layout.

    <root>/dmos.csv           columns dist_img,ref_img,dmos,var (found by name, any order)
    <root>/images/I01_01_01.png   reference 01, distortion type 01, level 01

`root` may also be the folder that contains `kadid10k/`. dmos.csv may be re-saved with a BOM,
CRLF newlines or another delimiter (see `label_table`); names are matched to files ignoring
letter case. DMOS is 1..5 (higher is better; a value outside is an error naming its line);
mos_norm = (dmos - 0.5) / 5 as in MetaIQA. dist_type 1..25 in `KADID_TYPES` order.
"""

import os
import re

from metaiqa_jax.data.base import FileSource, check_scale, resolve_paths
from metaiqa_jax.data.label_table import read_table
from metaiqa_jax.data.labels import normalize_kadid

SCALE = (1.0, 5.0)
_NAME = re.compile(r'^i(\d+)_(\d+)_(\d+)\.\w+$', re.IGNORECASE)


class KADID10k(FileSource):
  """The 10,125 distorted KADID-10k images with their DMOS."""

  def __init__(self, root, max_side=None):
    root = os.fspath(root)
    if not os.path.isfile(os.path.join(root, 'dmos.csv')) and os.path.isfile(
        os.path.join(root, 'kadid10k', 'dmos.csv')):
      root = os.path.join(root, 'kadid10k')
    table_path = os.path.join(root, 'dmos.csv')
    if not os.path.isfile(table_path):
      raise FileNotFoundError(f'KADID-10k: no dmos.csv in {root} (expected the native layout '
                              'kadid10k/dmos.csv + kadid10k/images/)')
    table = read_table(table_path, header=True)
    name_col = table.column(('dist_img',), 'dist_img')
    dmos_col = table.column(('dmos',), 'dmos')
    dmos, types, levels, refs, names, origins = [], [], [], [], [], []
    for line, row in table.rows:
      origins.append(table.where(line))
      names.append(table.field(line, row, name_col, 'dist_img'))
      match = _NAME.match(names[-1])
      if match is None:
        raise ValueError(f'{origins[-1]}: dist_img {names[-1]!r} is not like I01_01_01.png')
      ref, dist_type, level = (int(g) for g in match.groups())
      dmos.append(table.number(line, row, dmos_col, 'dmos'))
      types.append(dist_type)
      levels.append(level)
      refs.append(ref)
    check_scale(dmos, SCALE, origins, "KADID-10k's DMOS scale")
    paths = resolve_paths(root, [f'images/{name}' for name in names])
    super().__init__('KADID-10k', paths, dmos, normalize_kadid(dmos), types, levels, refs, names,
                     max_side, origins)

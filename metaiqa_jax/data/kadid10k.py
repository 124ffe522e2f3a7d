"""KADID-10k (Lin, Hosu, Saupe, QoMEX 2019) in its native layout.

    <root>/dmos.csv           columns dist_img,ref_img,dmos,var
    <root>/images/I01_01_01.png   reference 01, distortion type 01, level 01

`root` may also be the folder that contains `kadid10k/`. DMOS is 1..5 (higher is better);
mos_norm = (dmos - 0.5) / 5 as in MetaIQA. dist_type 1..25 in `KADID_TYPES` order.
"""

import csv
import os
import re

from metaiqa_jax.data.base import FileSource, parse_number
from metaiqa_jax.data.labels import normalize_kadid

_NAME = re.compile(r'^i(\d+)_(\d+)_(\d+)\.\w+$', re.IGNORECASE)


class KADID10k(FileSource):
  """The 10,125 distorted KADID-10k images with their DMOS."""

  def __init__(self, root, max_side=None):
    root = os.fspath(root)
    if not os.path.isfile(os.path.join(root, 'dmos.csv')) and os.path.isfile(
        os.path.join(root, 'kadid10k', 'dmos.csv')):
      root = os.path.join(root, 'kadid10k')
    table = os.path.join(root, 'dmos.csv')
    if not os.path.isfile(table):
      raise FileNotFoundError(f'KADID-10k: no dmos.csv in {root} (expected the native layout '
                              'kadid10k/dmos.csv + kadid10k/images/)')
    paths, dmos, types, levels, refs, names, origins = [], [], [], [], [], [], []
    with open(table, newline='') as f:
      reader = csv.DictReader(f)
      if not {'dist_img', 'dmos'} <= set(reader.fieldnames or ()):
        raise ValueError(f'{table}:1: needs columns dist_img and dmos, has {reader.fieldnames}')
      for line, row in enumerate(reader, start=2):
        match = _NAME.match((row['dist_img'] or '').strip())
        if match is None:
          raise ValueError(f'{table}:{line}: dist_img {row["dist_img"]!r} is not like '
                           'I01_01_01.png')
        ref, dist_type, level = (int(g) for g in match.groups())
        names.append(row['dist_img'].strip())
        paths.append(os.path.join(root, 'images', names[-1]))
        origins.append(f'{table}:{line}')
        dmos.append(parse_number(row['dmos'], origins[-1], 'dmos'))
        types.append(dist_type)
        levels.append(level)
        refs.append(ref)
    super().__init__('KADID-10k', paths, dmos, normalize_kadid(dmos), types, levels, refs, names,
                     max_side, origins)

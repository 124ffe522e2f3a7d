"""TID2013 (Ponomarenko et al., 2015) in its native layout.

    <root>/mos_with_names.txt     lines "5.51429 i01_01_1.bmp" (MOS 0..9, higher is better)
    <root>/distorted_images/      i01_01_1.bmp ... (file names mix i/I and .bmp/.BMP)
    <root>/reference_images/

Names are matched case-insensitively. mos_norm = mos / 9 as in MetaIQA. dist_type is TID2013's
own numbering 1..24 (not KADID's), dist_level 1..5, ref_id 1..25.
"""

import os
import re

from metaiqa_jax.data.base import FileSource, parse_number
from metaiqa_jax.data.labels import normalize_tid2013

_NAME = re.compile(r'^i(\d+)_(\d+)_(\d+)\.bmp$', re.IGNORECASE)


class TID2013(FileSource):
  """The 3,000 distorted TID2013 images with their MOS."""

  def __init__(self, root, max_side=None):
    root = os.fspath(root)
    table = os.path.join(root, 'mos_with_names.txt')
    image_dir = os.path.join(root, 'distorted_images')
    if not os.path.isfile(table):
      raise FileNotFoundError(f'TID2013: no mos_with_names.txt in {root}')
    on_disk = ({f.lower(): f for f in os.listdir(image_dir)} if os.path.isdir(image_dir)
               else {})
    paths, mos, types, levels, refs, names, origins = [], [], [], [], [], [], []
    with open(table) as f:
      for line_no, line in enumerate(f, start=1):
        if not line.strip():
          continue
        fields = line.split()
        match = _NAME.match(fields[-1]) if len(fields) == 2 else None
        if match is None:
          raise ValueError(f'{table}:{line_no}: expected "<mos> iXX_YY_Z.bmp", got {line!r}')
        ref, dist_type, level = (int(g) for g in match.groups())
        name = fields[1]
        names.append(name)
        paths.append(os.path.join(image_dir, on_disk.get(name.lower(), name)))
        origins.append(f'{table}:{line_no}')
        mos.append(parse_number(fields[0], origins[-1], 'MOS'))
        types.append(dist_type)
        levels.append(level)
        refs.append(ref)
    super().__init__('TID2013', paths, mos, normalize_tid2013(mos), types, levels, refs, names,
                     max_side, origins)

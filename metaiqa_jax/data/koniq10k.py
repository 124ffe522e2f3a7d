"""KonIQ-10k (Hosu, Lin, Sziranyi, Saupe, 2020) in its native layout.

    <root>/koniq10k_scores_and_distributions.csv   image_name,c1..c5,c_total,MOS,SD,MOS_zscore
    <root>/1024x768/<image_name>   (or <root>/512x384/)

MOS is 1..5 (higher is better). The authors did not fine-tune on KonIQ-10k in their released
code; we normalise mos_norm = (MOS - 1) / 4, mapping the rating scale onto 0..1 exactly.
Authentic distortions: dist_type -1, dist_level 0, ref_id -1.
"""

import csv
import os

import numpy as np

from metaiqa_jax.data.base import FileSource, parse_number
from metaiqa_jax.data.labels import normalize_koniq

RESOLUTIONS = ('1024x768', '512x384')
SCORES_CSV = 'koniq10k_scores_and_distributions.csv'


class KonIQ10k(FileSource):
  """The 10,073 KonIQ-10k images with their MOS."""

  def __init__(self, root, resolution='1024x768', max_side=None):
    root = os.fspath(root)
    if resolution not in RESOLUTIONS:
      raise ValueError(f'KonIQ-10k resolution must be one of {RESOLUTIONS}, got {resolution!r}')
    table = os.path.join(root, SCORES_CSV)
    if not os.path.isfile(table):
      raise FileNotFoundError(f'KonIQ-10k: no {SCORES_CSV} in {root}')
    names, mos, origins = [], [], []
    with open(table, newline='') as f:
      reader = csv.DictReader(f)
      if not {'image_name', 'MOS'} <= set(reader.fieldnames or ()):
        raise ValueError(f'{table}:1: needs columns image_name and MOS, has {reader.fieldnames}')
      for line, row in enumerate(reader, start=2):
        origins.append(f'{table}:{line}')
        names.append((row['image_name'] or '').strip())
        mos.append(parse_number(row['MOS'], origins[-1], 'MOS'))
    n = len(names)
    paths = [os.path.join(root, resolution, name) for name in names]
    super().__init__('KonIQ-10k', paths, mos, normalize_koniq(mos), np.full(n, -1), np.zeros(n),
                     np.full(n, -1), names, max_side, origins)

"""KADID-10k human labels per (distortion type, level), and the label normalisations of MetaIQA.

The table `kadid10k_type_level_mos.csv` (shipped in this package) holds, for each of the 25
KADID-10k distortion types and 5 levels, the mean and standard deviation of the human DMOS over
the 81 reference contents (1..5 scale, higher is better). It was computed from the 10,125
published KADID-10k labels and alone explains 89% of their variance (R^2 = 0.89).

Source: H. Lin, V. Hosu, D. Saupe, "KADID-10k: A Large-scale Artificially Distorted IQA
Database", QoMEX 2019. See `LABELS.md` next to this file.

Normalisations to the model's (0, 1) training scale, as in the authors' released code:
  TID2013        mos / 9
  KADID-10k      (dmos - 0.5) / 5
  LIVE Challenge mos / 100
  KonIQ-10k      mos / 100 (the official sets file, 0..100) or (mos - 1) / 4 (the scores
                 file, 1..5): our choice, maps the file's scale onto 0..1 exactly
"""

import csv
import functools
import importlib.resources
from typing import Dict, Tuple

import numpy as np

NUM_TYPES = 25
NUM_LEVELS = 5


@functools.lru_cache(maxsize=None)
def _table() -> Tuple[Tuple[str, ...], np.ndarray, np.ndarray]:
  """Returns (25 type names, (25, 5) float64 means, (25, 5) float64 stds)."""
  text = importlib.resources.files(__package__).joinpath(
      'kadid10k_type_level_mos.csv').read_text()
  names: Dict[int, str] = {}
  mean = np.full((NUM_TYPES, NUM_LEVELS), np.nan)
  std = np.full((NUM_TYPES, NUM_LEVELS), np.nan)
  for row in csv.DictReader(text.splitlines()):
    t, l = int(row['type_id']), int(row['level'])
    names[t] = row['type_name']
    mean[t - 1, l - 1] = float(row['mos_mean'])
    std[t - 1, l - 1] = float(row['mos_std'])
  if sorted(names) != list(range(1, NUM_TYPES + 1)) or np.isnan(mean).any():
    raise ValueError('kadid10k_type_level_mos.csv does not cover 25 types x 5 levels')
  mean.setflags(write=False)
  std.setflags(write=False)
  return tuple(names[t] for t in range(1, NUM_TYPES + 1)), mean, std


KADID_TYPES: Tuple[str, ...] = _table()[0]


def check_type_level(dist_type: int, level: int) -> None:
  """Raises ValueError unless 1 <= dist_type <= 25 and 1 <= level <= 5 (integers)."""
  if not isinstance(dist_type, (int, np.integer)) or not 1 <= dist_type <= NUM_TYPES:
    raise ValueError(f'dist_type must be an integer in 1..{NUM_TYPES} (KADID-10k order), '
                     f'got {dist_type!r}')
  if not isinstance(level, (int, np.integer)) or not 1 <= level <= NUM_LEVELS:
    raise ValueError(f'level must be an integer in 1..{NUM_LEVELS}, got {level!r}')


def kadid_label(dist_type: int, level: int) -> float:
  """Human mean DMOS (KADID's 1..5 scale, higher is better) of a KADID type (1..25) and level."""
  check_type_level(dist_type, level)
  return float(_table()[1][dist_type - 1, level - 1])


def kadid_label_std(dist_type: int, level: int) -> float:
  """Std of the human DMOS over the 81 KADID references for that type (1..25) and level (1..5)."""
  check_type_level(dist_type, level)
  return float(_table()[2][dist_type - 1, level - 1])


def kadid_label_table() -> np.ndarray:
  """Read-only (25, 5) float64 array of human mean DMOS, row = type - 1, column = level - 1."""
  return _table()[1]


def normalize_kadid(dmos):
  """KADID-10k DMOS (1..5) -> model scale: (dmos - 0.5) / 5, in (0.1, 0.9)."""
  return (np.asarray(dmos, np.float64) - 0.5) / 5.0


def normalize_tid2013(mos):
  """TID2013 MOS (0..9) -> model scale: mos / 9."""
  return np.asarray(mos, np.float64) / 9.0


def normalize_livec(mos):
  """LIVE Challenge MOS (0..100) -> model scale: mos / 100."""
  return np.asarray(mos, np.float64) / 100.0


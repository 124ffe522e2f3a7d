"""LIVE In the Wild Image Quality Challenge (Ghadiyaram, Bovik, 2016) in its native layout.

    <root>/Data/AllImages_release.mat   'AllImages_release': 1169 image names (cell array)
    <root>/Data/AllMOS_release.mat      'AllMOS_release': 1169 MOS values, 0..100
    <root>/Images/<name>                (the first 7 names live in Images/trainingImages/)

The first 7 entries are the challenge's training images and are dropped by default (1162 left),
as in MetaIQA and the literature. Names are matched to files ignoring letter case (`10.JPG`
finds `10.jpg`). Errors name the .mat entry, 1-based over all entries
(`.../AllImages_release.mat entry 12`). A MOS outside 0..100 is an error. mos_norm = mos / 100.
Authentic distortions: dist_type -1, dist_level 0, ref_id -1.
"""

import os

import numpy as np
import scipy.io

from metaiqa_jax.data.base import FileSource, check_scale, resolve_paths
from metaiqa_jax.data.labels import normalize_livec

NUM_TRAINING_IMAGES = 7
SCALE = (0.0, 100.0)


def _mat_strings(value) -> list:
  """A MATLAB cell array of strings as loaded by scipy.io.loadmat -> list of str."""
  out = []
  for cell in np.asarray(value, dtype=object).ravel():
    out.append(str(np.asarray(cell).ravel()[0]).strip())
  return out


class LIVEChallenge(FileSource):
  """LIVE Challenge images with their MOS (1162 without the 7 training images)."""

  def __init__(self, root, max_side=None, drop_training_images=True):
    root = os.fspath(root)
    names_mat = os.path.join(root, 'Data', 'AllImages_release.mat')
    mos_mat = os.path.join(root, 'Data', 'AllMOS_release.mat')
    for f in (names_mat, mos_mat):
      if not os.path.isfile(f):
        raise FileNotFoundError(f'LIVE Challenge: missing {f}')
    names = _mat_strings(scipy.io.loadmat(names_mat)['AllImages_release'])
    mos = np.asarray(scipy.io.loadmat(mos_mat)['AllMOS_release'], np.float64).ravel()
    if len(names) != len(mos):
      raise ValueError(f'LIVE Challenge: {len(names)} names in {names_mat} but {len(mos)} MOS '
                       f'values in {mos_mat}')
    check_scale(mos, SCALE, [f'{mos_mat} entry {i + 1}' for i in range(len(mos))],
                "LIVE Challenge's MOS scale")
    listed = [f'trainingImages/{name}' if i < NUM_TRAINING_IMAGES else name
              for i, name in enumerate(names)]
    origins = [f'{names_mat} entry {i + 1}' for i in range(len(names))]
    start = NUM_TRAINING_IMAGES if drop_training_images else 0
    paths = resolve_paths(os.path.join(root, 'Images'), listed[start:])
    names, mos, origins = names[start:], mos[start:], origins[start:]
    n = len(names)
    super().__init__('LIVE Challenge', paths, mos, normalize_livec(mos), np.full(n, -1),
                     np.zeros(n), np.full(n, -1), names, max_side, origins)

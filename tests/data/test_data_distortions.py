"""The 25 KADID distortions: shape/dtype, determinism, identity levels, severity vs the human
table (SSIM from scikit-image against the pristine image), and the label table."""

import csv
import itertools
import os

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from metaiqa_jax.data import KADID_TYPES, distort, kadid_label
from metaiqa_jax.data.labels import kadid_label_table
from metaiqa_jax.data.pristine import bundled_photo_paths, load_pristine

TYPES = range(1, 26)
LEVELS = range(1, 6)
# Types whose parameter changes sign across the levels: the identity is level 3 and the
# severity order only holds moving away from it on each side. Humans also rate the two sides
# differently (brighter / more contrast preferred), which a fidelity measure cannot see, so
# pairs across the sides are not compared.
SIGNED_BRANCHES = {18: ((1, 2, 3), (3, 4, 5)), 25: ((1, 2, 3), (3, 4, 5))}
# Human means closer than this are not a clear ordering.
CLEAR_MARGIN = 0.25
RANDOM_TYPES = (11, 12, 13, 14, 15, 19, 20, 23)


@pytest.fixture(scope='module')
def photos():
  """Two bundled photos, longer side 128 px."""
  named = dict(load_pristine(max_side=128))
  return [named['coffee'], named['astronaut']]


@pytest.fixture(scope='module')
def ssim_table(photos):
  """SSIM vs pristine, (n_photos, 25, 5)."""
  return np.array([[[structural_similarity(p, distort(p, t, l), channel_axis=-1,
                                           data_range=255) for l in LEVELS] for t in TYPES]
                   for p in photos])


def test_label_table_matches_shipped_csv():
  path = os.path.join(os.path.dirname(__import__('metaiqa_jax.data', fromlist=['x']).__file__),
                      'kadid10k_type_level_mos.csv')
  with open(path) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 125
  for row in rows:
    assert kadid_label(int(row['type_id']), int(row['level'])) == float(row['mos_mean'])
  assert len(KADID_TYPES) == 25
  assert (KADID_TYPES[0], KADID_TYPES[9], KADID_TYPES[24]) == ('GBLUR', 'JPEG', 'Contrast Dist.')
  assert kadid_label(1, 1) == 4.6122 and kadid_label(25, 5) == 3.3238
  with pytest.raises(ValueError, match='dist_type'):
    kadid_label(26, 1)
  with pytest.raises(ValueError, match='level'):
    kadid_label(1, 0)


def test_bundled_photos_are_on_disk():
  names = [os.path.basename(p) for p in bundled_photo_paths()]
  assert {'astronaut.png', 'coffee.png', 'chelsea.png', 'china.jpg', 'flower.jpg',
          'grace_hopper.jpg'} <= set(names)


@pytest.mark.parametrize('dist_type', TYPES)
def test_shape_dtype_determinism(photos, dist_type):
  image = photos[0]
  for level in LEVELS:
    out = distort(image, dist_type, level, seed=3)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, distort(image, dist_type, level, seed=3))
  if dist_type in RANDOM_TYPES:
    assert not np.array_equal(distort(image, dist_type, 5, seed=3),
                              distort(image, dist_type, 5, seed=4))


@pytest.mark.parametrize('dist_type,level', [(8, 1), (18, 3), (25, 3)])
def test_identity_levels(photos, dist_type, level):
  image = photos[1]
  diff = np.abs(distort(image, dist_type, level).astype(int) - image)
  assert diff.max() <= 1  # Lab round trip may move a value by one grey level


def _clear_pairs(dist_type):
  table = kadid_label_table()[dist_type - 1]
  for branch in SIGNED_BRANCHES.get(dist_type, (tuple(LEVELS),)):
    for a, b in itertools.combinations(branch, 2):
      if abs(table[a - 1] - table[b - 1]) > CLEAR_MARGIN:
        yield a, b


@pytest.mark.parametrize('dist_type', TYPES)
def test_severity_follows_human_table(ssim_table, dist_type):
  """Where the human mean of level a is clearly above level b, SSIM(a) > SSIM(b)."""
  table = kadid_label_table()[dist_type - 1]
  pairs = list(_clear_pairs(dist_type))
  assert pairs, 'every type has clearly ordered levels'
  for photo_ssim in ssim_table[:, dist_type - 1]:
    for a, b in pairs:
      assert np.sign(photo_ssim[a - 1] - photo_ssim[b - 1]) == np.sign(table[a - 1] -
                                                                        table[b - 1]), (a, b)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match='uint8'):
    distort(np.zeros((32, 32, 3), np.float32), 1, 1)
  with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
    distort(np.zeros((32, 32), np.uint8), 1, 1)
  with pytest.raises(ValueError, match='H, W >= 16'):
    distort(np.zeros((8, 32, 3), np.uint8), 1, 1)
  with pytest.raises(ValueError, match='dist_type'):
    distort(np.zeros((32, 32, 3), np.uint8), 0, 1)

"""The sharpness baseline against a plain-numpy Laplacian, and on the LIVE Challenge dev half."""

import os

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from metaiqa_jax.baselines import laplacian_variance, sharpness_scores

LIVEC_DEV = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'livec_dev',
                         'ChallengeDB_release')


def _numpy_laplacian_variance(rgb_uint8):
  """4-neighbour Laplacian with reflected borders (d c b a | a b c d), written out in numpy."""
  grey = np.asarray(rgb_uint8, np.float64) @ np.array([0.299, 0.587, 0.114])
  padded = np.pad(grey, 1, mode='symmetric')
  lap = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
         - 4 * grey)
  return lap.var()


def test_matches_numpy_reference():
  rgb = np.random.default_rng(0).integers(0, 256, (23, 31, 3), dtype=np.uint8)
  assert laplacian_variance(rgb) == pytest.approx(_numpy_laplacian_variance(rgb), rel=1e-12)
  grey = rgb[..., 0].astype(np.float64)
  assert laplacian_variance(grey) == pytest.approx(ndimage.laplace(grey).var(), rel=1e-12)


def test_blur_lowers_and_noise_raises_sharpness():
  rng = np.random.default_rng(1)
  image = (ndimage.zoom(rng.random((12, 12, 3)), (8, 8, 1), order=3) * 255).clip(0, 255)
  image = image.astype(np.uint8)
  blurred = ndimage.gaussian_filter(image, (2, 2, 0))
  noisy = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
  scores = sharpness_scores([blurred, image, noisy])
  assert scores[0] < scores[1] < scores[2]


@pytest.mark.skipif(not os.path.isdir(LIVEC_DEV), reason='../shared/data/livec_dev is absent')
def test_livec_dev_half_srocc():
  from metaiqa_jax.data import make_source  # pylint: disable=g-import-not-at-top
  source = make_source('livec', LIVEC_DEV)
  scores = sharpness_scores(np.asarray(Image.open(source.path(i)).convert('RGB'))
                            for i in range(len(source)))
  srocc = stats.spearmanr(scores, source.metadata()['mos'])[0]
  assert len(source) == 581 and srocc == pytest.approx(0.469, abs=0.005)


def test_ridge_probe_matches_scikit_learn():
  from sklearn.linear_model import Ridge as SkRidge
  from sklearn.preprocessing import StandardScaler
  from metaiqa_jax.baselines import probe
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 80)) * rng.uniform(0.1, 10, 80) + rng.normal(size=80)
  y = x[:, :5] @ rng.normal(size=5) + 0.1 * rng.normal(size=60)
  test = rng.normal(size=(20, 80)) * x.std(0) + x.mean(0)
  scaler = StandardScaler().fit(x)
  expected = SkRidge(alpha=30.0).fit(scaler.transform(x), y).predict(scaler.transform(test))
  got = probe.Ridge.fit(x, y, 30.0).predict(test)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

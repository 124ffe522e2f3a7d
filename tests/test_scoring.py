"""`score` (batching, padding, crops, unreadable files) and the `metaiqa-score` CLI end to end."""

import csv
import io
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.images import ImageReadError
from metaiqa_jax.models import backbones, create_model, infer_model_config
from metaiqa_jax.models.metaiqa import jitted_backbone
from metaiqa_jax.models.construct import initial_variables
from metaiqa_jax.preprocess import InputSpec, eval_crops, prepare_images
from metaiqa_jax.scoring import score
from metaiqa_jax.weights import load_torch_weights

WEIGHTS = os.path.join(os.path.dirname(__file__), 'fixtures', 'metaiqa_module.pt')
SIZE = 32


@pytest.fixture(scope='module')
def variables():
  return load_torch_weights(WEIGHTS)


@pytest.fixture(scope='module')
def predict(variables):
  config = infer_model_config(variables)
  model = create_model(config.arch, config.width, config.num_classes, config.head_features)
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


@pytest.fixture(scope='module')
def images():
  rng = np.random.default_rng(0)
  return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
          for h, w in [(40, 50), (33, 33), (64, 20), (50, 45), (31, 70)]]


def test_padded_batches_equal_unpadded_and_direct_apply(variables, predict, images):
  reference = np.asarray(predict(variables, prepare_images(images, SIZE)))
  unpadded = score(variables, images, batch_size=5, image_size=SIZE)
  padded = score(variables, images, batch_size=2, image_size=SIZE)  # batches 2, 2, 1 + padding.
  assert padded.shape == (5,) and padded.dtype == np.float32
  assert np.all((padded > 0) & (padded < 1))
  np.testing.assert_allclose(unpadded, reference, atol=1e-6)
  np.testing.assert_allclose(padded, reference, atol=1e-6)


def test_n_crops_averages_the_fixed_crops(variables, predict, images):
  crops = np.concatenate([eval_crops(image, 3, resize_to=37, crop=SIZE) for image in images[:2]])
  reference = np.asarray(predict(variables, crops)).reshape(2, 3).mean(axis=1)
  ours = score(variables, images[:2], batch_size=2, image_size=SIZE, n_crops=3)
  np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_input_spec_scores_are_the_mean_over_its_views(variables, predict, images):
  inputs = InputSpec(16, resize_to=0, eval_grid=2, fragments=2)
  views = np.concatenate([inputs.eval(image) for image in images[:3]])
  reference = np.asarray(predict(variables, views)).reshape(3, 4).mean(axis=1)
  ours = score(variables, images[:3], batch_size=2, inputs=inputs)
  np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_unreadable_files_raise_or_are_reported(tmp_path, variables, images):
  good = tmp_path / 'good.png'
  Image.fromarray(images[0]).save(good)
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'')
  with pytest.raises(ImageReadError) as info:
    score(variables, [str(good), str(bad)], image_size=SIZE)
  assert info.value.path == str(bad)
  errors = []
  scores = score(variables, [str(bad), str(good), images[0]], image_size=SIZE,
                 batch_size=2, on_error=errors.append)
  assert [e.path for e in errors] == [str(bad)]
  assert np.isnan(scores[0])
  np.testing.assert_allclose(scores[1], scores[2], atol=1e-6)  # PNG is lossless.


def test_views_split_over_calls_and_decoded_ahead_keep_their_order(tmp_path, variables, predict,
                                                                  images):
  """Images decoded by threads ahead of the device, their views cut into calls of 2 (an
  image's 3 views span two calls), an unreadable file in the middle: each score is the mean of
  that image's own views."""
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'')
  items = images[:3] + [str(bad)] + images[3:] + images[:2]
  errors = []
  ours = score(variables, items, batch_size=2, image_size=SIZE, n_crops=3,
               on_error=errors.append)
  good = [image for image in items if not isinstance(image, str)]
  crops = np.concatenate([eval_crops(image, 3, resize_to=37, crop=SIZE) for image in good])
  reference = np.asarray(predict(variables, crops)).reshape(len(good), 3).mean(axis=1)
  assert [e.path for e in errors] == [str(bad)] and np.isnan(ours[3])
  np.testing.assert_allclose(np.delete(ours, 3), reference, atol=1e-6)


def test_folded_efficientnet_equals_the_unfolded_model(images):
  """Scoring runs EfficientNet-Lite with its BatchNorms folded into the convolutions
  (`efficientnet.fold_batchnorm`). Under the ImageNet weights (real BatchNorm statistics, not
  the identity an initialisation leaves) its pooled features equal the plain backbone's in
  evaluation mode within 1e-4 of their scale, and `score` equals the plain model's forward."""
  model = create_model('efficientnet_lite0', head_features=(8,), head_input='pooled')
  variables = initial_variables(model, 'imagenet', jax.random.key(0), SIZE)
  x = prepare_images(images[:4], SIZE)
  plain = np.asarray(jitted_backbone(model)(variables, x))
  folded_module, fold = backbones.get('efficientnet_lite0').folded(1000, 'pooled',
                                                                   jax.numpy.float32, None)
  backbone_variables = {c: variables[c]['backbone'] for c in variables}
  folded = jax.jit(lambda v, x: folded_module.apply(v, x, False))(fold(backbone_variables), x)
  np.testing.assert_allclose(folded, plain, atol=1e-4 * np.abs(plain).max())
  reference = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
  np.testing.assert_allclose(score(variables, images[:4], batch_size=2, image_size=SIZE),
                             reference, atol=1e-5)


def _write_test_tree(root, images):
  (root / 'sub').mkdir()
  Image.fromarray(images[0]).save(root / 'a.png')
  Image.fromarray(images[1]).save(root / 'sub' / 'b.jpg', quality=95)
  Image.fromarray(images[2]).save(root / 'sub' / 'c.bmp')
  jpeg = io.BytesIO()
  Image.fromarray(images[3]).save(jpeg, format='JPEG')
  (root / 'truncated.jpg').write_bytes(jpeg.getvalue()[:200])
  (root / 'empty.png').write_bytes(b'')
  (root / 'text.png').write_text('this is not an image')
  (root / 'notes.txt').write_text('ignored: not an image extension')
  good = [root / 'a.png', root / 'sub' / 'b.jpg', root / 'sub' / 'c.bmp']
  corrupt = [root / 'truncated.jpg', root / 'empty.png', root / 'text.png']
  return [str(p) for p in good], [str(p) for p in corrupt]


def test_cli_end_to_end(tmp_path, variables):
  images_dir = tmp_path / 'images'
  images_dir.mkdir()
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (36, 44, 3), dtype=np.uint8) for _ in range(4)]
  good, corrupt = _write_test_tree(images_dir, images)
  output = tmp_path / 'scores.csv'
  missing = str(tmp_path / 'nothing_*.png')
  result = subprocess.run(
      [sys.executable, '-m', 'metaiqa_jax.cli.score', '--weights', WEIGHTS, '--output',
       str(output), '--image_size', str(SIZE), '--batch_size', '2', str(images_dir),
       str(images_dir / 'sub' / '*.jpg'), missing],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  for path in corrupt + [missing]:
    assert f'skipped {path}' in result.stderr or f'cannot read image {path}' in result.stderr
  assert 'notes.txt' not in result.stderr
  with open(output, newline='') as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['path', 'score']
  assert sorted(r[0] for r in rows[1:]) == sorted(good)
  written = {path: float(value) for path, value in rows[1:]}
  expected = score(variables, good, image_size=SIZE)
  np.testing.assert_allclose([written[p] for p in good], expected, atol=2e-6)


def test_cli_bad_weights_file_exits_2(tmp_path):
  weights = tmp_path / 'weights.pt'
  weights.write_bytes(b'garbage')
  image = tmp_path / 'x.png'
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  result = subprocess.run(
      [sys.executable, '-m', 'metaiqa_jax.cli.score', '--weights', str(weights), str(image)],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert f'cannot read {weights} as a PyTorch file' in result.stderr

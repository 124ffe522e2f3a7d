"""Preprocessing against independent references (jax.image.resize, Pillow, numpy slicing)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.io import ImageReadError
from metaiqa_jax.preprocess import (IMAGENET_MEAN, IMAGENET_STD, eval_crops, eval_transform,
                                    load_image, normalize,
                                    prepare_images, resize, train_transform)


@pytest.fixture(scope='module')
def photo():
  """A smooth-plus-texture uint8 test image, 45 x 61."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:45, 0:61]
  base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.float64)
  return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _reference_normalize(x01):
  return (x01 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize('size', [(20, 17), (45, 61), (90, 100), (13, 130)])
def test_float_resize_matches_antialiased_jax_resize(photo, size):
  x01 = photo.astype(np.float32) / 255
  ours = resize(x01, size)
  reference = jax.image.resize(jnp.asarray(x01), (*size, 3), 'linear', antialias=True)
  assert ours.dtype == np.float32 and ours.shape == (*size, 3)
  np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_uint8_resize_is_rounded_float_resize(photo):
  ours = resize(photo, 24)
  assert ours.dtype == np.uint8 and ours.shape == (24, 24, 3)
  float_version = resize(photo.astype(np.float32) / 255, 24) * 255
  assert np.abs(ours.astype(np.float32) - float_version).max() <= 1.0


def test_grayscale_is_repeated_and_bad_inputs_rejected(photo):
  gray = photo[..., 0]
  out = resize(gray, 10)
  np.testing.assert_array_equal(out, resize(np.repeat(gray[..., None], 3, -1), 10))
  with pytest.raises(ValueError, match=r'shape \(45, 61, 4\)'):
    resize(np.zeros((45, 61, 4), np.uint8), 10)
  with pytest.raises(ValueError, match='dtype int32'):
    resize(np.zeros((4, 4, 3), np.int32), 10)


def test_normalize_constants():
  np.testing.assert_allclose(normalize(IMAGENET_MEAN), 0, atol=1e-7)
  np.testing.assert_allclose(normalize(IMAGENET_MEAN + IMAGENET_STD), 1, atol=1e-6)
  x = np.random.default_rng(1).random((4, 5, 3))
  np.testing.assert_allclose(normalize(x), _reference_normalize(x), atol=1e-6)


def test_eval_transform_is_pil_resize_then_normalize(photo):
  out = eval_transform(photo, 32)
  pil = np.asarray(Image.fromarray(photo).resize((32, 32), Image.BILINEAR)) / 255.0
  assert out.dtype == np.float32 and out.shape == (32, 32, 3)
  np.testing.assert_allclose(out, _reference_normalize(pil), atol=1e-5)


def test_train_transform_replays_its_draws(photo):
  resize_to, crop = 12, 9
  resized = np.asarray(Image.fromarray(photo).resize((resize_to, resize_to), Image.BILINEAR))
  offsets, flips = set(), 0
  for seed in range(60):
    out = train_transform(photo, np.random.default_rng(seed), resize_to, crop)
    draws = np.random.default_rng(seed)
    flip = draws.random() < 0.5
    top, left = draws.integers(0, resize_to - crop + 1, size=2)
    source = resized[:, ::-1] if flip else resized
    expect = _reference_normalize(source[top:top + crop, left:left + crop] / 255.0)
    np.testing.assert_allclose(out, expect, atol=1e-5)
    offsets.add((int(top), int(left)))
    flips += flip
  assert out.dtype == np.float32 and out.shape == (crop, crop, 3)
  assert len(offsets) == 16  # every top/left in 0..3 occurs.
  assert 15 < flips < 45
  with pytest.raises(ValueError, match='crop'):
    train_transform(photo, np.random.default_rng(0), 8, 9)


def test_eval_crops_positions_and_flips():
  image = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  crops = eval_crops(image, 10, resize_to=8, crop=6)  # no resize: 8 -> 8.
  windows = [(1, 1), (0, 0), (0, 2), (2, 0), (2, 2)]
  assert crops.shape == (10, 6, 6, 3) and crops.dtype == np.float32
  for k in range(10):
    source = image if k < 5 else image[:, ::-1]
    top, left = windows[k % 5]
    np.testing.assert_allclose(
        crops[k], _reference_normalize(source[top:top + 6, left:left + 6] / 255.0), atol=1e-5)
  np.testing.assert_array_equal(eval_crops(image, 3, 8, 6), crops[:3])
  with pytest.raises(ValueError, match='n_crops'):
    eval_crops(image, 11)


def test_prepare_images_mixes_paths_and_arrays(tmp_path, photo):
  path = tmp_path / 'photo.png'
  Image.fromarray(photo).save(path)
  x01 = photo.astype(np.float32) / 255
  batch = prepare_images([str(path), photo, x01, photo[:20, :30]], size=16)
  assert batch.shape == (4, 16, 16, 3) and batch.dtype == np.float32
  np.testing.assert_array_equal(batch[0], batch[1])  # PNG is lossless.
  np.testing.assert_allclose(batch[2], batch[1], atol=1.0 / 255 / 0.224)  # uint8 rounding.
  np.testing.assert_allclose(batch[3], eval_transform(photo[:20, :30], 16))
  np.testing.assert_array_equal(prepare_images(path, size=16), batch[:1])


def test_prepare_images_shrinks_huge_files_while_reading(tmp_path):
  yy, xx = np.mgrid[0:600, 0:900]
  big = np.stack([xx % 256, yy % 256, (xx // 4) % 256], axis=-1).astype(np.uint8)
  path = tmp_path / 'big.png'
  Image.fromarray(big).save(path)
  assert load_image(str(path), max_side=300).shape == (200, 300, 3)
  assert load_image(str(path), max_side=None).shape == (600, 900, 3)
  full = prepare_images([str(path)], size=32, max_side=None)
  shrunk = prepare_images([str(path)], size=32, max_side=300)
  assert np.abs(full - shrunk).mean() < 0.05


def test_prepare_images_errors_name_the_input(tmp_path):
  bad = tmp_path / 'broken.jpg'
  bad.write_bytes(b'not a jpeg')
  with pytest.raises(ImageReadError) as info:
    prepare_images([np.zeros((4, 4, 3), np.uint8), str(bad)], size=8)
  assert info.value.path == str(bad)
  with pytest.raises(ValueError, match='item 1 of images_or_paths'):
    prepare_images([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8)], size=8)
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\) batch'):
    prepare_images(np.zeros((4, 4, 3), np.uint8), size=8)

"""Preprocessing against independent references (jax.image.resize, Pillow, numpy slicing)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.images import ImageReadError
from metaiqa_jax.preprocess import (IMAGENET_MEAN, IMAGENET_STD, InputSpec, eval_crops,
                                    eval_transform, load_image, normalize, prepare_images, resize,
                                    train_transform)


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


def _unnormalize(x):
  return np.rint((x * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255)


def _find(image, patch):
  """(top, left) positions where `patch` (uint8) occurs in `image`."""
  h, w = patch.shape[:2]
  return [(t, l) for t in range(image.shape[0] - h + 1) for l in range(image.shape[1] - w + 1)
          if np.array_equal(image[t:t + h, l:l + w], patch)]


def test_native_crop_is_a_slice_of_the_unresized_image(photo):
  spec = InputSpec(16, resize_to=0, eval_grid=2)
  rng = np.random.default_rng(3)
  for _ in range(5):
    crop = _unnormalize(spec.train(photo, rng)).astype(np.uint8)
    assert _find(photo, crop) or _find(photo[:, ::-1], crop)
  views = spec.eval(photo)
  assert views.shape == (4, 16, 16, 3)
  corners = [photo[:16, :16], photo[:16, -16:], photo[-16:, :16], photo[-16:, -16:]]
  for view, corner in zip(views, corners):
    np.testing.assert_allclose(view, normalize(corner / 255.0), atol=1e-6)


def test_fragments_take_one_mini_patch_per_cell(photo):
  spec = InputSpec(16, resize_to=0, eval_grid=1, fragments=4)
  fragment = _unnormalize(spec.train(photo, np.random.default_rng(0))).astype(np.uint8)
  flipped = _find(photo, fragment[:4, :4]) == []
  source = photo[:, ::-1] if flipped else photo
  for i in range(4):
    for j in range(4):
      positions = _find(source, fragment[4 * i:4 * i + 4, 4 * j:4 * j + 4])
      cell_rows = range(i * 45 // 4, (i + 1) * 45 // 4 - 3)
      cell_cols = range(j * 61 // 4, (j + 1) * 61 // 4 - 3)
      assert any(t in cell_rows and l in cell_cols for t, l in positions), (i, j)
  # Evaluation (grid 1): every mini-patch at the middle of its cell's free range.
  (view,) = spec.eval(photo)
  for i in range(4):
    top0, top1 = i * 45 // 4, (i + 1) * 45 // 4
    top = top0 + int(0.5 * (top1 - top0 - 4 + 0.999))
    left = int(0.5 * (61 // 4 - 4 + 0.999))
    np.testing.assert_allclose(view[4 * i:4 * i + 4, :4],
                               normalize(photo[top:top + 4, left:left + 4] / 255.0), atol=1e-6)


def test_resized_whole_image_evaluation_is_the_authors_test(photo):
  spec = InputSpec(24, resize_to=28)
  np.testing.assert_array_equal(spec.eval(photo)[0], eval_transform(photo, 24))
  rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
  np.testing.assert_array_equal(spec.train(photo, rng_a), train_transform(photo, rng_b, 28, 24))


def test_native_inputs_enlarge_images_smaller_than_the_input(photo):
  spec = InputSpec(64, resize_to=0, eval_grid=2)
  assert spec.eval(photo).shape == (4, 64, 64, 3)  # the 45 x 61 photo is enlarged to 64 x 87
  assert spec.train(photo, np.random.default_rng(0)).shape == (64, 64, 3)


@pytest.mark.parametrize('kwargs, message', [
    (dict(image_size=32, resize_to=16), 'resize_to'),
    (dict(image_size=32, resize_to=0), 'eval_grid >= 1'),
    (dict(image_size=30, resize_to=0, eval_grid=1, fragments=4), 'divisible'),
    (dict(image_size=32, resize_to=0, eval_grid=1, fragments=1), 'fragments must be'),
])
def test_impossible_input_specs_are_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    InputSpec(**kwargs)


def test_input_spec_round_trips_through_a_dict():
  spec = InputSpec(64, resize_to=0, eval_grid=3, fragments=4)
  assert InputSpec.from_dict(spec.to_dict()) == spec

"""Odd and broken image files through `read_image`, `score` and the `metaiqa-score` CLI.

Decodable oddities (16-bit, grayscale, RGBA, palette, CMYK, EXIF-rotated, tiny, huge) are
handled: they become 8-bit RGB and get a score. Broken files (truncated, empty, not an image)
are refused by name: `score` raises `ImageReadError` or reports them to `on_error` (NaN score),
the CLI skips them with the file named and exits 1. Training sources find them up front
(`FileSource.verify`, see test_fault_training_data.py).
"""

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.images import ImageReadError, read_image
from metaiqa_jax.preprocess import READ_MAX_SIDE
from metaiqa_jax.scoring import score
from metaiqa_jax.weights import load_torch_weights

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures',
                       'metaiqa_module.pt')
SIZE = 32
_EXIF_ORIENTATION = 0x0112


def _photo(h=24, w=40, seed=0):
  """A smooth colour image (compresses well, survives JPEG)."""
  y, x = np.mgrid[0:h, 0:w]
  rng = np.random.default_rng(seed)
  phase = rng.random(3) * 6
  return (127.5 + 127 * np.sin(x[..., None] / 7 + y[..., None] / 11 + phase)).astype(np.uint8)


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
  buf = io.BytesIO()
  image.save(buf, 'JPEG', quality=95, **kwargs)
  return buf.getvalue()


def write_odd_files(root) -> dict:
  """Writes every decodable oddity; returns {kind: path}."""
  os.makedirs(root, exist_ok=True)
  paths = {}

  def save(kind, ext, image, **kwargs):
    paths[kind] = os.path.join(root, f'{kind}.{ext}')
    image.save(paths[kind], **kwargs)

  ramp16 = (np.arange(24 * 40, dtype=np.uint32).reshape(24, 40) * 68).astype(np.uint16)
  save('png16', 'png', Image.fromarray(ramp16))
  save('gray', 'png', Image.fromarray(_photo()[..., 0]))
  rgba = np.dstack([_photo(), np.full((24, 40), 255, np.uint8)])
  rgba[:, :20, 3] = 0
  save('rgba', 'png', Image.fromarray(rgba, 'RGBA'))
  save('palette', 'png', Image.fromarray(_photo()).quantize(16))
  cmyk = np.zeros((24, 40, 4), np.uint8)
  cmyk[:, :20, 1:3] = 255  # Magenta + yellow = red on the left, nothing (white) on the right.
  save('cmyk', 'jpg', Image.fromarray(cmyk, 'CMYK'), quality=95)
  exif = Image.Exif()
  exif[_EXIF_ORIENTATION] = 6  # "Rotate 90 CW to display".
  save('exif_rotated', 'jpg', Image.fromarray(_photo()), quality=95, exif=exif)
  save('tiny', 'png', Image.fromarray(_photo(6, 5)))
  return paths


def write_broken_files(root) -> dict:
  """Writes every undecodable file; returns {kind: path}."""
  os.makedirs(root, exist_ok=True)
  jpeg = _jpeg_bytes(Image.fromarray(_photo(64, 64)))
  buf = io.BytesIO()
  Image.fromarray(_photo(64, 64)).save(buf, 'PNG')
  contents = {'truncated.jpg': jpeg[:len(jpeg) // 2], 'truncated.png': buf.getvalue()[:200],
              'empty.jpg': b'', 'not_an_image.png': b'name,mos\na.png,3.5\n'}
  paths = {}
  for name, content in contents.items():
    paths[os.path.splitext(name)[0]] = os.path.join(root, name)
    with open(paths[os.path.splitext(name)[0]], 'wb') as f:
      f.write(content)
  return paths


@pytest.fixture(scope='module')
def odd(tmp_path_factory):
  return write_odd_files(str(tmp_path_factory.mktemp('odd')))


@pytest.fixture(scope='module')
def broken(tmp_path_factory):
  return write_broken_files(str(tmp_path_factory.mktemp('broken')))


@pytest.fixture(scope='module')
def variables():
  return load_torch_weights(WEIGHTS)


def test_16_bit_png_is_scaled_to_8_bits(odd):
  image = read_image(odd['png16'])
  raw = np.asarray(Image.open(odd['png16']), np.float64)
  assert image.dtype == np.uint8 and image.shape == (24, 40, 3)
  np.testing.assert_array_equal(image[..., 0], np.round(raw / 65535 * 255))
  assert (image[..., 0] == image[..., 2]).all()


def test_grayscale_becomes_three_equal_channels(odd):
  image = read_image(odd['gray'])
  np.testing.assert_array_equal(image, np.repeat(_photo()[..., :1], 3, axis=2))


def test_transparent_pixels_are_composited_on_white(odd):
  image = read_image(odd['rgba'])
  assert (image[:, :20] == 255).all()
  np.testing.assert_array_equal(image[:, 20:], _photo()[:, 20:])


def test_palette_image_is_expanded(odd):
  image = read_image(odd['palette'])
  expected = np.asarray(Image.open(odd['palette']).convert('RGB'))
  np.testing.assert_array_equal(image, expected)
  assert len(np.unique(image.reshape(-1, 3), axis=0)) <= 16


def test_cmyk_jpeg_becomes_rgb(odd):
  image = read_image(odd['cmyk']).astype(int)
  assert image.shape == (24, 40, 3)
  np.testing.assert_allclose(image[4:-4, 4:16].mean((0, 1)), [255, 0, 0], atol=8)
  np.testing.assert_allclose(image[4:-4, 24:36].mean((0, 1)), [255, 255, 255], atol=8)


def test_exif_orientation_is_applied(odd):
  image = read_image(odd['exif_rotated'])
  stored = np.asarray(Image.open(odd['exif_rotated']).convert('RGB'))  # As stored, unrotated.
  assert stored.shape == (24, 40, 3) and image.shape == (40, 24, 3)
  np.testing.assert_array_equal(image, np.rot90(stored, k=-1))  # 90 degrees clockwise.


@pytest.mark.parametrize('kind', ['truncated', 'empty', 'not_an_image'])
def test_broken_files_raise_naming_the_file(broken, kind):
  with pytest.raises(ImageReadError) as error:
    read_image(broken[kind])
  assert error.value.path == broken[kind] and broken[kind] in str(error.value)


def test_truncated_png_raises(broken):
  with pytest.raises(ImageReadError, match='truncated.png'):
    read_image(broken['truncated'].replace('.jpg', '.png'))


def test_score_handles_oddities_and_reports_broken_files(odd, broken, variables):
  broken_paths = sorted(set(broken.values()) | {broken['truncated'].replace('.jpg', '.png')})
  paths = list(odd.values()) + broken_paths
  reported = []
  scores = score(variables, paths, image_size=SIZE, batch_size=4, on_error=reported.append)
  assert sorted(e.path for e in reported) == broken_paths
  assert np.isfinite(scores[:len(odd)]).all() and ((scores[:len(odd)] > 0) &
                                                   (scores[:len(odd)] < 1)).all()
  assert np.isnan(scores[len(odd):]).all()
  with pytest.raises(ImageReadError, match='empty.jpg'):
    score(variables, [odd['gray'], broken['empty']], image_size=SIZE, batch_size=4)


def test_image_smaller_than_the_crop_is_upscaled(odd, variables):
  one = score(variables, [odd['tiny']], image_size=SIZE, batch_size=4)
  crops = score(variables, [odd['tiny']], image_size=SIZE, batch_size=4, n_crops=5)
  assert np.isfinite(one).all() and np.isfinite(crops).all()


def test_cli_scores_oddities_and_skips_broken_files_by_name(odd, broken, tmp_path):
  output = tmp_path / 'scores.csv'
  result = subprocess.run(
      [sys.executable, '-m', 'metaiqa_jax.cli.score', '--weights', WEIGHTS, '--output',
       str(output), '--image_size', str(SIZE), '--batch_size', '4',
       os.path.dirname(odd['gray']), os.path.dirname(broken['empty'])],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  unreadable = sorted(os.path.join(os.path.dirname(broken['empty']), f)
                      for f in os.listdir(os.path.dirname(broken['empty'])))
  for path in unreadable:
    assert f'skipped cannot read image {path}:' in result.stderr
  assert f'{len(unreadable)} of {len(unreadable) + len(odd)} inputs skipped' in result.stderr
  with open(output, newline='') as f:
    rows = list(csv.reader(f))[1:]
  assert sorted(r[0] for r in rows) == sorted(odd.values())
  assert all(0 < float(r[1]) < 1 for r in rows)


# Peak RSS growth of scoring one file, after compiling: Linux resets the peak (VmHWM) to the
# current RSS when "5" is written to /proc/self/clear_refs.
_HUGE_WORKER = """
import numpy as np
from metaiqa_jax import preprocess
from metaiqa_jax.scoring import score
from metaiqa_jax.weights import load_torch_weights

def status_kib(field):
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))

variables = load_torch_weights({weights!r})
score(variables, [np.zeros((40, 40, 3), np.uint8)], image_size={size}, batch_size=1)  # Compile.
with open('/proc/self/clear_refs', 'w') as f:
  f.write('5')
before = status_kib('VmRSS')
shape = preprocess.load_image({path!r}, {max_side}).shape
value = score(variables, [{path!r}], image_size={size}, batch_size=1, max_side={max_side})[0]
print(shape[0], shape[1], value, (status_kib('VmHWM') - before) / 1024)
"""


def huge_image_peak_memory(path, max_side):
  """(decoded height, width, score, peak RSS growth in MiB) of scoring `path` in a subprocess."""
  result = subprocess.run(
      [sys.executable, '-c', _HUGE_WORKER.format(weights=WEIGHTS, size=SIZE, path=path,
                                                 max_side=max_side)],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  h, w, value, growth_mib = result.stdout.split()[-4:]
  return int(h), int(w), float(value), float(growth_mib)


@pytest.mark.skipif(not os.path.exists('/proc/self/clear_refs'), reason='needs Linux /proc')
def test_8000x6000_jpeg_is_shrunk_while_decoding(tmp_path):
  path = str(tmp_path / 'huge.jpg')
  gradient = Image.linear_gradient('L').resize((8000, 6000))
  Image.merge('RGB', (gradient, gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
                      gradient)).save(path, quality=80)
  del gradient
  h, w, value, growth_mib = huge_image_peak_memory(path, READ_MAX_SIDE)
  print(f'8000x6000 JPEG: decoded at {w}x{h}, score {value}, peak RSS growth {growth_mib} MiB '
        f'(full-size uint8 RGB: {8000 * 6000 * 3 / 2**20:.0f} MiB)')
  assert max(h, w) <= READ_MAX_SIDE and w * 3 == h * 4
  assert 0 < value < 1
  # Measured here: 82 MiB (draft decode at 4000x3000 = 34 MiB, then the thumbnail); without
  # max_side the same call grows by 825 MiB.
  assert growth_mib < 200

"""Host-side image preprocessing: resize, ImageNet normalisation, train/eval crops (numpy only).

These run in data-loader worker processes, so nothing here touches JAX. Randomness is explicit:
`train_transform` takes a `numpy.random.Generator`.

Images are `(H, W, 3)` arrays (`(H, W)` and `(H, W, 1)` grayscale are repeated to RGB): uint8 in
0..255 or float in [0, 1]. Model inputs are float32 `(size, size, 3)`, normalised with the ImageNet
mean/std on [0, 1] pixels, NHWC.

The pipeline follows the authors' (zhuhancheng/MetaIQA): train = resize to 256 x 256 (aspect
ratio ignored), random horizontal flip, random 224 crop; test = the whole image resized to
224 x 224, one pass. `InputSpec` names this choice and the alternative that keeps distortions at
the scale they were made and rated at: crops at the image's native resolution, scored as the
mean over a grid of crops.
"""

import dataclasses
import os
from typing import Sequence, Union

import numpy as np
from PIL import Image

from metaiqa_jax import configlib
from metaiqa_jax.images import read_image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Files are shrunk while decoding so that their longer side is at most this (see `load_image`).
READ_MAX_SIDE = 2048

ImageOrPath = Union[np.ndarray, str, os.PathLike]


def _as_rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3) or min(image.shape[:2]) < 1:
    raise ValueError(f'expected an image of shape (H, W, 3), (H, W, 1) or (H, W); '
                     f'got shape {image.shape}')
  if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f'expected a uint8 (0..255) or float ([0, 1]) image; got dtype {image.dtype}')
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image


def _size_hw(size) -> tuple[int, int]:
  height, width = (size, size) if np.isscalar(size) else tuple(size)
  if int(height) < 1 or int(width) < 1:
    raise ValueError(f'resize target must be positive, got {size}')
  return int(height), int(width)


def resize(image: np.ndarray, size: Union[int, Sequence[int]]) -> np.ndarray:
  """Bilinear resize with Pillow, ignoring the aspect ratio.

  Pillow's `BILINEAR` filter is a triangle kernel whose support grows with the shrink factor, so
  downscaling averages every source pixel (antialiased) and upscaling is plain bilinear
  interpolation with half-pixel centres. torchvision's `Resize` on PIL images is exactly this,
  as is pyiqa's path-based MetaIQA input. Compared with the alternatives:

  * `jax.image.resize(method='linear', antialias=True)` uses the same scaled triangle kernel:
    measured on skimage's 512 x 512 astronaut (float input, to 224, 256 x 300 and 700 x 900) the
    two agree within 2e-5; uint8 input is rounded to whole grey levels (<= 1 level apart).
  * torch `F.interpolate(mode='bilinear', align_corners=False)` is identical when enlarging; with
    `antialias=False` (the default, and pyiqa's tensor path) it reads only the 2 x 2 nearest
    pixels when shrinking and aliases; `antialias=True` is close to Pillow.
  * skimage `transform.resize(order=1)` (what the authors' released scripts call, with its
    default `anti_aliasing=True` when shrinking) blurs with a Gaussian of sigma (factor - 1) / 2
    first, then interpolates bilinearly, reflecting at the borders: on the same image, 512 -> 224
    differs from Pillow by 1.0 grey level on average and up to 29 at sharp edges.

  Args:
    image: `(H, W, 3)` (or grayscale) uint8 or float array of any size.
    size: `n` for n x n, or `(height, width)`.

  Returns:
    `(height, width, 3)`: uint8 for uint8 input, float32 for float input.
  """
  image = _as_rgb(image)
  height, width = _size_hw(size)
  if image.shape[:2] == (height, width):
    return image if image.dtype == np.uint8 else image.astype(np.float32)
  if image.dtype == np.uint8:
    resized = Image.fromarray(image, 'RGB').resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)
  channels = [Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), 'F')
              .resize((width, height), Image.Resampling.BILINEAR) for c in range(3)]
  return np.stack([np.asarray(c) for c in channels], axis=-1)


def normalize(x01: np.ndarray) -> np.ndarray:
  """`(x - IMAGENET_MEAN) / IMAGENET_STD` on `(..., 3)` pixels in [0, 1]; float32."""
  return ((np.asarray(x01, np.float32) - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def _to_model_input(image: np.ndarray) -> np.ndarray:
  """uint8 0..255 or float [0, 1] `(..., 3)` -> normalised float32."""
  x01 = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
  return normalize(x01)


def train_transform(image_uint8: np.ndarray, rng: np.random.Generator, resize_to: int = 256,
                    crop: int = 224) -> np.ndarray:
  """Training augmentation of the authors' pipeline.

  Resize to `resize_to x resize_to` (aspect ignored), flip left-right with probability 1/2, take a
  uniformly random `crop x crop` window (every offset 0..resize_to-crop possible), normalise.
  `rng` is drawn from three times, in this order: flip, top, left.

  Args:
    image_uint8: `(H, W, 3)` uint8 (or float in [0, 1]) image of any size.
    rng: numpy Generator, e.g. `np.random.default_rng(seed)`.
    resize_to: side of the resized square, pixels.
    crop: side of the crop, pixels (<= resize_to).

  Returns:
    float32 `(crop, crop, 3)`, ImageNet-normalised.
  """
  if not 0 < crop <= resize_to:
    raise ValueError(f'crop ({crop}) must be in 1..resize_to ({resize_to})')
  image = resize(image_uint8, resize_to)
  if rng.random() < 0.5:
    image = image[:, ::-1]
  top, left = rng.integers(0, resize_to - crop + 1, size=2)
  return _to_model_input(image[top:top + crop, left:left + crop])


def eval_transform(image_uint8: np.ndarray, size: int = 224) -> np.ndarray:
  """Test-time input: the whole image resized to `size x size` and normalised.

  Args:
    image_uint8: `(H, W, 3)` uint8 (or float in [0, 1]) image of any size.
    size: output side, pixels.

  Returns:
    float32 `(size, size, 3)`.
  """
  return _to_model_input(resize(image_uint8, size))


def eval_crops(image: np.ndarray, n_crops: int, resize_to: int = 256,
               crop: int = 224) -> np.ndarray:
  """Deterministic test-time crops for averaging predictions.

  The image is resized to `resize_to x resize_to`; crop k (0-based) is, in order: centre,
  top-left, top-right, bottom-left, bottom-right, then the same five of the left-right flipped
  image. `n_crops` takes the first n of these ten.

  Args:
    image: `(H, W, 3)` uint8 (or float in [0, 1]) image of any size.
    n_crops: 1..10.
    resize_to: side of the resized square, pixels.
    crop: side of each crop, pixels (<= resize_to).

  Returns:
    float32 `(n_crops, crop, crop, 3)`, normalised.
  """
  if not 1 <= n_crops <= 10:
    raise ValueError(f'n_crops must be in 1..10, got {n_crops}')
  if not 0 < crop <= resize_to:
    raise ValueError(f'crop ({crop}) must be in 1..resize_to ({resize_to})')
  image = resize(image, resize_to)
  far, mid = resize_to - crop, (resize_to - crop) // 2
  offsets = [(mid, mid), (0, 0), (0, far), (far, 0), (far, far)]
  crops = []
  for k in range(n_crops):
    source = image if k < 5 else image[:, ::-1]
    top, left = offsets[k % 5]
    crops.append(source[top:top + crop, left:left + crop])
  return _to_model_input(np.stack(crops))


def load_image(image_or_path: ImageOrPath, max_side: int = READ_MAX_SIDE) -> np.ndarray:
  """An array as is, or a file decoded to uint8 `(H, W, 3)` by `metaiqa_jax.images.read_image`.

  Files whose longer side exceeds `max_side` are shrunk while decoding (JPEG DCT scaling, then
  an antialiased bilinear thumbnail), so huge photos never need a full-resolution copy; the
  aspect ratio is kept, so the later square resize sees the same content. None: full decode.

  Raises:
    ImageReadError: the file is missing, empty, truncated or not an image (names it).
  """
  if isinstance(image_or_path, (str, os.PathLike)):
    return read_image(image_or_path, max_side=max_side)
  return _as_rgb(image_or_path)


def prepare_images(images_or_paths, size: int = 224, *,
                   max_side: int = READ_MAX_SIDE) -> np.ndarray:
  """Images and/or file paths -> one model-ready batch (`eval_transform` of each).

  Args:
    images_or_paths: a sequence whose items are uint8/float `(H, W, 3)` arrays of any sizes or
      image file paths (a single path is taken as a list of one; a 4-D array as a batch).
    size: output side, pixels.
    max_side: decoding limit for files (see `load_image`).

  Returns:
    float32 `(N, size, size, 3)`, ImageNet-normalised.

  Raises:
    ImageReadError: a file cannot be read (names it).
    ValueError: an array is not an image (says which item and why).
  """
  if isinstance(images_or_paths, (str, os.PathLike)):
    images_or_paths = [images_or_paths]
  elif isinstance(images_or_paths, np.ndarray) and images_or_paths.ndim != 4:
    raise ValueError(f'an array argument must be a (N, H, W, 3) batch, got shape '
                     f'{images_or_paths.shape}; pass a list for single images')
  batch = np.zeros((len(images_or_paths), size, size, 3), np.float32)
  for i, item in enumerate(images_or_paths):
    try:
      batch[i] = eval_transform(load_image(item, max_side), size)
    except ValueError as e:
      if isinstance(item, (str, os.PathLike)):
        raise
      raise ValueError(f'item {i} of images_or_paths: {e}') from e
  return batch


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """How an image becomes model inputs for training and for evaluation; saved with checkpoints.

  Attributes:
    image_size: side of every model input, pixels.
    resize_to: n > 0: the image is first resized to n x n, aspect ignored (the authors'
      pipeline: 256, then 224 crops). 0: no resize; inputs are cut from the image at its native
      resolution, so blur, noise and compression keep the scale they were rated at (an image
      whose shorter side is below `image_size` is enlarged to it first, aspect kept).
    eval_grid: 0: evaluation resizes the whole image to `image_size` (the authors' test; needs
      `resize_to` > 0). g >= 1: g x g evaluation views, at evenly spaced positions, whose mean
      is the image's score.
    fragments: 0: each input is one `image_size` crop. G >= 2: each input is a fragment (Wu et
      al., FAST-VQA, ECCV 2022): the image is cut into a G x G grid of cells and one mini-patch
      of side image_size / G is taken from every cell, spliced in place. A fragment keeps
      native-scale detail while every input sees the whole image (its exposure, colour,
      contrast), and a flat region cannot fill a whole input.

  Positions: for training a crop (or each mini-patch, within its cell) is placed uniformly at
  random; evaluation view (i, j) of a g x g grid places it at fraction ((i + .5) / g,
  (j + .5) / g) of the free range for fragments, and from corner to corner
  (i / (g - 1), j / (g - 1)) for crops.
  """
  image_size: int = 224
  resize_to: int = 256
  eval_grid: int = 0
  fragments: int = 0

  def __post_init__(self):
    if self.image_size < 1:
      raise ValueError(f'image_size must be positive, got {self.image_size}')
    if self.resize_to and self.resize_to < self.image_size:
      raise ValueError(f'resize_to ({self.resize_to}) must be 0 (native resolution) or at least '
                       f'image_size ({self.image_size})')
    if self.eval_grid < 0:
      raise ValueError(f'eval_grid must be >= 0, got {self.eval_grid}')
    if not self.resize_to and not self.eval_grid:
      raise ValueError('native-resolution inputs (resize_to=0) need eval_grid >= 1: a whole image '
                       'of arbitrary size is not a fixed-shape model input')
    if self.fragments == 1 or self.fragments < 0:
      raise ValueError(f'fragments must be 0 (plain crops) or >= 2, got {self.fragments}')
    if self.fragments and (self.image_size % self.fragments or not self.eval_grid):
      raise ValueError(f'fragments={self.fragments} needs image_size ({self.image_size}) '
                       f'divisible by it and eval_grid >= 1 (got {self.eval_grid})')

  @property
  def num_views(self) -> int:
    """Model inputs per image at evaluation (V)."""
    return max(1, self.eval_grid) ** 2

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d) -> 'InputSpec':
    return cls(**{f.name: int(d[f.name]) for f in dataclasses.fields(cls) if f.name in d})

  @classmethod
  def from_config(cls, data_config) -> 'InputSpec':
    """The input pipeline a config's `data` section names (`image_size`, `resize_to`,
    `eval_grid`, `fragments`).

    Raises:
      configlib.ConfigError: the combination is impossible (names the keys).
    """
    try:
      return cls(data_config.image_size, data_config.resize_to, data_config.eval_grid,
                 data_config.fragments)
    except ValueError as e:
      raise configlib.ConfigError(
          f'config.data (image_size, resize_to, eval_grid, fragments): {e}') from e

  def _base(self, image: np.ndarray) -> np.ndarray:
    """The image inputs are cut from: resized to resize_to, or native (enlarged if small)."""
    image = _as_rgb(image)
    if self.resize_to:
      return resize(image, self.resize_to)
    height, width = image.shape[:2]
    short = min(height, width)
    if short < self.image_size:
      scale = self.image_size / short
      image = resize(image, (max(self.image_size, round(height * scale)),
                             max(self.image_size, round(width * scale))))
    return image

  def _cut(self, image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """One input from `image` (already `_base`d); `where` (n, n, 2) in [0, 1] places the crop
    (n = 1) or each fragment's mini-patch (n = fragments) within its free range."""
    cells = max(1, self.fragments)
    patch = self.image_size // cells
    height, width = image.shape[:2]
    rows = []
    for i in range(cells):
      top0, top1 = i * height // cells, (i + 1) * height // cells
      row = []
      for j in range(cells):
        left0, left1 = j * width // cells, (j + 1) * width // cells
        if cells == 1:
          top0, top1, left0, left1 = 0, height, 0, width
        top = top0 + int(where[i, j, 0] * (top1 - top0 - patch + 0.999))
        left = left0 + int(where[i, j, 1] * (left1 - left0 - patch + 0.999))
        row.append(image[top:top + patch, left:left + patch])
      rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)

  def train(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A training input: random left-right flip, then a uniformly placed crop or fragment.

    With `resize_to` > 0 and no fragments this is `train_transform` (rng drawn: flip, top,
    left). Returns float32 `(image_size, image_size, 3)`, normalised.
    """
    if self.resize_to and not self.fragments:
      return train_transform(image, rng, self.resize_to, self.image_size)
    image = self._base(image)
    if rng.random() < 0.5:
      image = image[:, ::-1]
    cells = max(1, self.fragments)
    return _to_model_input(self._cut(image, rng.random((cells, cells, 2))))

  def eval(self, image: np.ndarray) -> np.ndarray:
    """The evaluation views of one image: float32 `(num_views, image_size, image_size, 3)`,
    normalised, ordered row by row (see the class docstring for the positions)."""
    if not self.eval_grid:
      return eval_transform(image, self.image_size)[None]
    image = self._base(image)
    g, cells = self.eval_grid, max(1, self.fragments)
    if self.fragments:
      steps = (np.arange(g) + 0.5) / g
    else:
      steps = np.arange(g) / (g - 1) if g > 1 else np.array([0.5])
    return _to_model_input(np.stack([
        self._cut(image, np.broadcast_to([y, x], (cells, cells, 2)))
        for y in steps for x in steps]))

"""Reading images from disk into uint8 RGB arrays, with errors that name the file.

Every reader in the package goes through `read_image`, so odd inputs are handled once:
grayscale, palette, RGBA (alpha composited on white), CMYK and 16-bit images become 8-bit RGB;
JPEG EXIF orientation is applied; truncated, empty and non-image files raise `ImageReadError`.
"""

import os
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = ('.bmp', '.jpg', '.jpeg', '.png', '.tif', '.tiff', '.webp', '.gif')


class ImageReadError(ValueError):
  """An image file is missing, empty, truncated or not an image. `path` names it."""

  def __init__(self, path, reason: str):
    self.path = os.fspath(path)
    super().__init__(f'cannot read image {self.path}: {reason}')


def _to_rgb(img: Image.Image) -> Image.Image:
  if img.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
    # 16/32-bit integer grayscale: scale the full range down to 8 bits.
    arr = np.asarray(img, dtype=np.float64)
    peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
    img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
  elif img.mode == 'F':
    arr = np.asarray(img, dtype=np.float64)
    img = Image.fromarray(np.clip(arr * (255.0 if arr.max(initial=0) <= 1 else 1) + 0.5,
                                  0, 255).astype(np.uint8))
  if img.mode == 'P':
    img = img.convert('RGBA')
  if img.mode in ('RGBA', 'LA', 'PA'):
    background = Image.new('RGBA', img.size, (255, 255, 255, 255))
    img = Image.alpha_composite(background, img.convert('RGBA'))
  return img.convert('RGB')


def decode_image(file, name, max_side: Optional[int] = None) -> np.ndarray:
  """Decodes an open binary file or a path to `(H, W, 3)` uint8 RGB; errors name `name`.

  `max_side`: see `read_image`.

  Raises:
    ImageReadError: not a decodable image (truncated, wrong format, ...).
  """
  try:
    with Image.open(file) as img:
      if max_side is not None and max(img.size) > max_side:
        img.draft('RGB', (max_side, max_side))
      img.load()
      if max_side is not None and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
      # Rotate after shrinking: the transposed copy is then small (the longer side is unchanged).
      img = ImageOps.exif_transpose(img)
      return np.asarray(_to_rgb(img), dtype=np.uint8)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageReadError(name, f'{type(e).__name__}: {e}') from e


def read_image(path, max_side: Optional[int] = None) -> np.ndarray:
  """Decodes `path` to a `(H, W, 3)` uint8 RGB array.

  Args:
    path: an image file (any format Pillow reads).
    max_side: if given, images whose longer side exceeds it are shrunk (Pillow `draft` for JPEG,
      then a bilinear `thumbnail`) before conversion, so a 8000x6000 photo never needs its
      full-resolution float copy. Aspect ratio is kept.

  Raises:
    ImageReadError: the file is missing, empty, truncated or not a decodable image.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ImageReadError(path, 'no such file')
  if os.path.getsize(path) == 0:
    raise ImageReadError(path, 'the file is empty (0 bytes)')
  return decode_image(path, path, max_side)

"""Pristine photos for the synthetic bank: the bundled ones, or any folder.

Bundled photos (no download), in this order:
- the 24 Kodak photos shipped in this package (`data/photos/kodak/`, 512 px long side, lossless;
  provenance in its README.md);
- the photos inside the wheels of our dependencies: scikit-image's astronaut, coffee, chelsea,
  rocket, hubble_deep_field, ihc (immunohistochemistry), motorcycle_left, motorcycle_right;
  scikit-learn's china, flower; matplotlib's grace_hopper. Files are read directly (never
  through `skimage.data.<name>()`, which may fetch with pooch); a library missing a file is
  skipped.
"""

import importlib.util
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from metaiqa_jax.images import IMAGE_EXTENSIONS, read_image

# (package holding the files, sub-folder, file names)
_BUNDLED = (
    ('skimage.data', '', ('astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.jpg',
                          'hubble_deep_field.jpg', 'ihc.png', 'motorcycle_left.png',
                          'motorcycle_right.png')),
    ('sklearn.datasets', 'images', ('china.jpg', 'flower.jpg')),
    ('matplotlib', os.path.join('mpl-data', 'sample_data'), ('grace_hopper.jpg',)),
)

PristineSpec = Union[None, str, os.PathLike, Sequence[np.ndarray]]


def _package_dir(package: str) -> Optional[str]:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    return None
  return list(spec.submodule_search_locations)[0]


KODAK_DIR = os.path.join(os.path.dirname(__file__), 'photos', 'kodak')


def bundled_photo_paths() -> List[str]:
  """Paths of the bundled colour photos present in this environment (up to 35), in fixed
  order: the 24 Kodak photos, then the 11 library photos."""
  paths = folder_image_paths(KODAK_DIR)
  for package, sub, names in _BUNDLED:
    root = _package_dir(package)
    if root is None:
      continue
    for name in names:
      path = os.path.join(root, sub, name)
      if os.path.isfile(path):
        paths.append(path)
  return paths


def folder_image_paths(folder) -> List[str]:
  """Image files (by extension, case-insensitive) directly in `folder`, sorted by name."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'pristine image folder {folder} does not exist')
  paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise ValueError(f'no image files ({", ".join(IMAGE_EXTENSIONS)}) in {folder}')
  return paths


def load_pristine(pristine: PristineSpec = None,
                  max_side: Optional[int] = None) -> List[Tuple[str, np.ndarray]]:
  """Loads pristine images as (name, (H, W, 3) uint8) pairs.

  Args:
    pristine: None for the bundled photos, a folder of images, or a sequence of uint8 (H, W, 3)
      arrays (named `image_000`, ...).
    max_side: longer side limit in px (aspect kept); None keeps the native size. Arrays passed
      in are shrunk the same way.
  """
  if pristine is None or isinstance(pristine, (str, os.PathLike)):
    paths = bundled_photo_paths() if pristine is None else folder_image_paths(pristine)
    if not paths:
      raise FileNotFoundError('none of the bundled pristine photos was found (need '
                              'scikit-image, scikit-learn or matplotlib installed)')
    return [(os.path.splitext(os.path.basename(p))[0], read_image(p, max_side)) for p in paths]
  out = []
  for i, image in enumerate(pristine):
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
      raise ValueError(f'pristine image {i} must be (H, W, 3) uint8, got shape {image.shape} '
                       f'dtype {image.dtype}')
    if max_side is not None and max(image.shape[:2]) > max_side:
      img = Image.fromarray(image)
      img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
      image = np.asarray(img)
    out.append((f'image_{i:03d}', image))
  if not out:
    raise ValueError('the list of pristine images is empty')
  return out

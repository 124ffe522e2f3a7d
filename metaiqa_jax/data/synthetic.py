"""A synthetic KADID-style bank: pristine photos x the 25 KADID distortions x 5 levels, in memory.

Every record is `distort(photo, dist_type, level)` labelled with the KADID-10k human mean DMOS
for that (type, level) (`kadid_label`), so mos is on KADID's 1..5 scale and mos_norm is KADID's
normalisation (dmos - 0.5) / 5. ref_id is the photo's index, so support/query and train/test
splits can keep reference content apart.
"""

import concurrent.futures
import multiprocessing
from typing import Dict, Iterable, Optional

import numpy as np
import tqdm

from metaiqa_jax.data.base import normalize_index
from metaiqa_jax.data.distortions import distort
from metaiqa_jax.data.labels import check_type_level, kadid_label, normalize_kadid
from metaiqa_jax.data.pristine import PristineSpec, load_pristine

DEFAULT_MAX_SIDE = 512  # KADID-10k images are 512x384


def _distort_all(photo: np.ndarray, items) -> list:
  """`distort(photo, t, l, seed=s)` for each (t, l, s) of `items` (a worker's job)."""
  return [distort(photo, t, l, seed=s) for t, l, s in items]


class SyntheticBank:
  """Random-access source of distorted pristine images (see the module docstring).

  Records are ordered photo-major, then type, then level. Each image is a deterministic function
  of (photo, type, level, seed): the random draws of `distort` are seeded from (seed, photo
  index, type), shared by the five levels.

  Args:
    pristine: None (bundled photos, see `pristine.py`), a folder of images, or a list of
      (H, W, 3) uint8 arrays.
    types: KADID distortion types (1..25) to include.
    levels: levels (1..5) to include.
    max_side: pristine photos are shrunk so their longer side is at most this (px).
    seed: base seed of the distortions.
    lazy: False generates every image now (tqdm progress bar); True generates each on first
      access and caches it.
    progress: show the progress bar when generating eagerly.
    workers: processes generating eagerly, one photo at a time each (1: in this process). The
      images do not depend on it.
  """

  def __init__(self, pristine: PristineSpec = None, types: Iterable[int] = range(1, 26),
               levels: Iterable[int] = range(1, 6), max_side: Optional[int] = DEFAULT_MAX_SIDE,
               seed: int = 0, lazy: bool = False, progress: bool = True, workers: int = 1):
    self.types, self.levels, self.seed = tuple(types), tuple(levels), int(seed)
    if not self.types or not self.levels:
      raise ValueError('SyntheticBank needs at least one type and one level')
    for t in self.types:
      for l in self.levels:
        check_type_level(t, l)
    self._photos = load_pristine(pristine, max_side)
    grid = np.array([(r, t, l) for r in range(len(self._photos)) for t in self.types
                     for l in self.levels], np.int64)
    self._grid = grid
    mos = np.array([kadid_label(int(t), int(l)) for _, t, l in grid])
    self._meta = {
        'mos': mos,
        'mos_norm': normalize_kadid(mos),
        'dist_type': grid[:, 1].copy(),
        'dist_level': grid[:, 2].copy(),
        'ref_id': grid[:, 0].copy(),
        'name': np.array([f'{self._photos[r][0]}_{t:02d}_{l}' for r, t, l in grid]),
    }
    for value in self._meta.values():
      value.setflags(write=False)
    self._cache: Dict[int, np.ndarray] = {}
    if not lazy:
      self._generate_all(workers, progress)

  def __len__(self) -> int:
    return len(self._grid)

  def metadata(self) -> Dict[str, np.ndarray]:
    """Labels of every record as read-only numpy arrays (no image is generated)."""
    return dict(self._meta)

  def pristine(self, ref_id: int) -> np.ndarray:
    """The undistorted (H, W, 3) uint8 photo with this ref_id."""
    return self._photos[ref_id][1]

  def item_seed(self, index: int) -> int:
    """Seed passed to `distort` for record `index`."""
    r, t, _ = self._grid[index]
    return int(np.random.SeedSequence([self.seed, int(r), int(t)]).generate_state(1)[0])

  def _generate_all(self, workers: int, progress: bool) -> None:
    """Fills the cache with every record, photo by photo, in `workers` processes."""
    per_photo = len(self.types) * len(self.levels)
    jobs = [(self._photos[r][1], [(int(t), int(l), self.item_seed(r * per_photo + k))
                                  for k, (_, t, l) in enumerate(self._grid[r * per_photo:
                                                                           (r + 1) * per_photo])])
            for r in range(len(self._photos))]
    bar = tqdm.tqdm(total=len(self), desc='synthetic bank', unit='img', disable=not progress)
    if workers > 1:
      # spawn, not fork: the parent may run JAX's threads, which fork does not copy safely.
      context = multiprocessing.get_context('spawn')
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        results = pool.map(_distort_all, *zip(*jobs))
        for r, images in enumerate(results):
          self._store(r * per_photo, images)
          bar.update(len(images))
    else:
      for r, job in enumerate(jobs):
        self._store(r * per_photo, _distort_all(*job))
        bar.update(per_photo)
    bar.close()

  def _store(self, start: int, images) -> None:
    for i, image in enumerate(images, start):
      image.setflags(write=False)
      self._cache[i] = image

  def _image(self, i: int) -> np.ndarray:
    if i not in self._cache:
      r, t, l = (int(v) for v in self._grid[i])
      image = distort(self._photos[r][1], t, l, seed=self.item_seed(i))
      image.setflags(write=False)
      self._cache[i] = image
    return self._cache[i]

  def __getitem__(self, index) -> Dict:
    i = normalize_index(index, len(self))
    record = {k: v[i].item() if k != 'name' else str(v[i]) for k, v in self._meta.items()}
    record['image'] = self._image(i)
    return record

  def __repr__(self) -> str:
    return (f'SyntheticBank({len(self._photos)} photos x {len(self.types)} types x '
            f'{len(self.levels)} levels)')

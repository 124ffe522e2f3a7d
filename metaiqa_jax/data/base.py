"""The random-access source contract shared by every dataset reader, and a file-backed base.

A source has `len(src)`, `src[i]` -> dict with
  image       (H, W, 3) uint8 RGB
  mos         float, the dataset's native scale
  mos_norm    float, the model's (0, 1) training scale (normalisation documented per dataset)
  dist_type   int, distortion type in the dataset's own numbering (-1 for authentic images)
  dist_level  int, distortion level (0 when none)
  ref_id      int, reference content (-1 when unknown)
  name        str
and `src.metadata()` -> dict of numpy arrays with the same keys except `image`, computed
without decoding any image.

Label tables are read by `label_table.read_table` (UTF-8 or UTF-16, a BOM or not, any newline
style, comma/tab/semicolon/whitespace-separated) and checked when a `FileSource` is built; every
error names the table line (or entry) it comes from: a MOS that is missing, not a number, outside
the dataset's rating scale, NaN or infinite; two records for the same image file; image files that
do not exist. Listed names are matched to files ignoring letter case (`resolve_paths`), since
copies between file systems often change `.JPG` into `.jpg`. `FileSource.verify()` additionally
decodes every image, so corrupt-but-present files are found before training starts rather than
mid-run.
"""

import concurrent.futures
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from metaiqa_jax.images import ImageReadError, read_image

METADATA_KEYS = ('mos', 'mos_norm', 'dist_type', 'dist_level', 'ref_id', 'name')
_SHOW_MISSING = 5


# Longer side images are decoded at by `FileSource.verify` (JPEG decodes at a reduced DCT scale).
_VERIFY_MAX_SIDE = 512


class UnreadableImagesError(ImageReadError):
  """Image files of a source that exist but cannot be decoded. `path` is the first, `paths` all."""

  def __init__(self, dataset: str, errors: Sequence[ImageReadError], total: int):
    self.paths = [e.path for e in errors]
    shown = '; '.join(str(e) for e in errors[:_SHOW_MISSING])
    more = f'; and {len(errors) - _SHOW_MISSING} more' if len(errors) > _SHOW_MISSING else ''
    super().__init__(self.paths[0], f'{dataset}: {len(errors)} of {total} image files cannot be '
                     f'decoded: {shown}{more}')


def parse_number(text, where: str, column: str) -> float:
  """`text` as a float (NaN allowed: `FileSource` rejects it with its origin).

  Raises:
    ValueError: naming `where` (e.g. `'dmos.csv:12'`) and `column` when `text` is missing or not
      a number.
  """
  try:
    return float(text)
  except (TypeError, ValueError):
    raise ValueError(f'{where}: {column} {text!r} is missing or not a number') from None


def check_scale(values, scale: Tuple[float, float], origins: Sequence[str], what: str) -> None:
  """Raises ValueError at the first finite value outside `scale` = (lo, hi), inclusive.

  `origins[i]` says where value `i` was listed; `what` says whose scale it is, e.g. `"KADID-10k's
  DMOS scale"` gives `'dmos.csv:12: MOS 7 is outside 1..5, KADID-10k's DMOS scale'`. NaN and
  infinite values are left to `FileSource`, which names them as such.
  """
  lo, hi = scale
  values = np.asarray(values, np.float64)
  bad = np.flatnonzero(np.isfinite(values) & ((values < lo) | (values > hi)))
  if bad.size:
    more = f' ({bad.size - 1} more values are outside it too)' if bad.size > 1 else ''
    raise ValueError(f'{origins[bad[0]]}: MOS {values[bad[0]]:g} is outside {lo:g}..{hi:g}, '
                     f'{what}{more}')


def resolve_paths(root: str, names: Sequence[str]) -> List[str]:
  """`os.path.join(root, name)` per name, matching each part of the name ignoring letter case
  where it is not on disk as written.

  A name may have folders (`'Images/trainingImages/t1.bmp'`, `/`-separated); each part missing
  as written is looked up in its folder's listing ignoring case (`10.JPG` finds `10.jpg`, and
  `images/` finds `Images/`); every folder is listed at most once. Of several entries differing
  only in case, the first in sorted order is taken. For an absolute name only its last part is
  matched. A name with no match keeps its path as written (`FileSource` reports it missing).
  """
  listings: Dict[str, Dict[str, str]] = {}

  def entry(folder: str, part: str) -> Optional[str]:
    if folder not in listings:
      try:
        entries = sorted(os.listdir(folder), reverse=True)
      except OSError:
        entries = []
      listings[folder] = {e.lower(): e for e in entries}  # reverse order: the first one wins
    return listings[folder].get(part.lower())

  paths = []
  for name in names:
    path = os.path.join(root, name)
    if not os.path.isfile(path):
      folder, parts = ((os.path.dirname(name), [os.path.basename(name)]) if os.path.isabs(name)
                       else (root, name.split('/')))
      for part in parts:
        match = part if os.path.exists(os.path.join(folder, part)) else entry(folder, part)
        if match is None:
          break
        folder = os.path.join(folder, match)
      else:
        path = folder
    paths.append(path)
  return paths


def check_files_exist(paths: Sequence[str], dataset: str,
                      origins: Optional[Sequence[str]] = None) -> None:
  """Raises FileNotFoundError naming the first few missing files and how many are missing.

  `origins[i]` (e.g. `'dmos.csv:12'`) says where record `i` was listed; it follows its path.
  """
  missing = [p + (f' (listed at {origins[i]})' if origins is not None else '')
             for i, p in enumerate(paths) if not os.path.isfile(p)]
  if missing:
    shown = ', '.join(missing[:_SHOW_MISSING])
    more = f' and {len(missing) - _SHOW_MISSING} more' if len(missing) > _SHOW_MISSING else ''
    raise FileNotFoundError(f'{dataset}: {len(missing)} of {len(paths)} image files are '
                            f'missing: {shown}{more}')


def verify_source(source) -> None:
  """Decodes every image file of `source` and of the sources inside its views (`Concat`,
  `Subset`); in-memory sources have nothing to check.

  Raises:
    UnreadableImagesError: from the first source with undecodable files.
  """
  if isinstance(source, FileSource):
    source.verify()
  for inner in getattr(source, 'sources', ()):
    verify_source(inner)
  if getattr(source, 'source', None) is not None:
    verify_source(source.source)


def normalize_index(index, length: int) -> int:
  """Python-style index (negative allowed) -> 0..length-1, IndexError when out of range."""
  i = int(index)
  if not -length <= i < length:
    raise IndexError(f'index {index} out of range for a source of {length} records')
  return i % length


class FileSource:
  """A source whose records are image files plus a label table (all readers derive from it).

  Args:
    dataset: name used in error messages.
    paths: image file per record.
    mos, mos_norm: native and (0, 1) labels per record.
    dist_type, dist_level, ref_id: ints per record (see the module docstring for conventions).
    names: record names.
    max_side: if given, images are shrunk on read so their longer side is at most this (px).
    origins: where each record was listed (`'<table>:<line>'`), for error messages; default
      `'<dataset> record <i>'`.

  Raises:
    ValueError: no records; a MOS that is NaN or infinite; two records for one image file.
    FileNotFoundError: image files that do not exist (the first few named, with their origins).
  """

  def __init__(self, dataset: str, paths: Sequence[str], mos, mos_norm, dist_type, dist_level,
               ref_id, names: Sequence[str], max_side: Optional[int] = None,
               origins: Optional[Sequence[str]] = None):
    n = len(paths)
    if n == 0:
      raise ValueError(f'{dataset}: the label table lists no images')
    self.dataset = dataset
    self.max_side = max_side
    self._paths = list(paths)
    self._meta = {
        'mos': np.asarray(mos, np.float64),
        'mos_norm': np.asarray(mos_norm, np.float64),
        'dist_type': np.asarray(dist_type, np.int64),
        'dist_level': np.asarray(dist_level, np.int64),
        'ref_id': np.asarray(ref_id, np.int64),
        'name': np.asarray(names, dtype=str),
    }
    for key, value in self._meta.items():
      if value.shape != (n,):
        raise ValueError(f'{dataset}: {key} has shape {value.shape}, expected ({n},)')
      value.setflags(write=False)
    if origins is None:
      origins = [f'{dataset} record {i}' for i in range(n)]
    for i in np.flatnonzero(~np.isfinite(self._meta['mos'])):
      raise ValueError(f'{origins[i]}: MOS of {self._paths[i]} is {self._meta["mos"][i]}')
    first_listed = {}
    for path, origin in zip(self._paths, origins):
      key = os.path.normcase(os.path.normpath(path))
      if key in first_listed:
        raise ValueError(f'{origin}: {path} is listed twice (first at {first_listed[key]})')
      first_listed[key] = origin
    check_files_exist(self._paths, dataset, origins)

  def __len__(self) -> int:
    return len(self._paths)

  def path(self, index) -> str:
    """The image file of record `index`."""
    return self._paths[normalize_index(index, len(self))]

  def metadata(self) -> Dict[str, np.ndarray]:
    """Labels of every record as read-only numpy arrays (no image is decoded)."""
    return dict(self._meta)

  def verify(self, max_workers: Optional[int] = None) -> None:
    """Decodes every image (at most `_VERIFY_MAX_SIDE` px, in threads) to find corrupt files.

    Raises:
      UnreadableImagesError: one error listing the first few undecodable files and the count.
    """
    def error(path):
      try:
        read_image(path, _VERIFY_MAX_SIDE)
      except ImageReadError as e:
        return e
      return None
    workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      errors = [e for e in pool.map(error, self._paths) if e is not None]
    if errors:
      raise UnreadableImagesError(self.dataset, errors, len(self))

  def __getitem__(self, index) -> Dict:
    i = normalize_index(index, len(self))
    record = {k: v[i].item() if k != 'name' else str(v[i]) for k, v in self._meta.items()}
    record['image'] = read_image(self._paths[i], self.max_side)
    return record

  def __repr__(self) -> str:
    return f'{type(self).__name__}({len(self)} images)'

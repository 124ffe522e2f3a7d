"""A prepared TFDS dataset as a package source (for `TaskSampler`, `make_loader`, splits).

Reads with `tfds.data_source` (random access into the ArrayRecord files, no TensorFlow) and
decodes the stored image bytes with Pillow, exactly as `metaiqa_jax.images.read_image` decodes files
(EXIF orientation applied; grayscale, palette, alpha and 16-bit images converted to 8-bit RGB).
Labels come back as stored: float32 precision (returned as Python floats / float64 arrays).
"""

import io
from typing import Dict, Optional

import numpy as np
import tensorflow_datasets as tfds

from metaiqa_jax import images as image_io
from metaiqa_jax.data.base import METADATA_KEYS, normalize_index
import metaiqa_jax.data.tfds.builders  # pylint: disable=unused-import  (registers the builders)

_INT_KEYS = ('dist_type', 'dist_level', 'ref_id')


def decode_image(encoded: bytes, name: str, max_side: Optional[int] = None) -> np.ndarray:
  """Encoded image bytes -> (H, W, 3) uint8 RGB, like `read_image`; errors name `name`."""
  return image_io.decode_image(io.BytesIO(encoded), name, max_side)


class TFDSSource:
  """Random-access source over a prepared TFDS dataset (e.g. 'metaiqa_kadid10k').

  Args:
    name: registered TFDS name, with config if any ('metaiqa_koniq10k/512x384').
    data_dir: where it was prepared.
    split: TFDS split (the builders write 'train').
    max_side: shrink images on decode so the longer side is at most this (px).

  `metadata()` reads every record once (image bytes included, not decoded) and caches it.

  Raises:
    ValueError: `name` is no registered TFDS dataset.
    FileNotFoundError: it is not prepared in `data_dir`.
  """

  def __init__(self, name: str, data_dir, split: str = 'train',
               max_side: Optional[int] = None):
    self.name, self.split, self.max_side = name, split, max_side
    registered = tfds.list_builders(with_community_datasets=False)
    if name.split('/')[0] not in registered:
      ours = [n for n in registered if n.startswith('metaiqa_')]
      raise ValueError(f'no TFDS dataset named {name!r}; the builders of metaiqa_jax.data.tfds '
                       f'are {", ".join(ours)}')
    # Checked here: tfds.data_source would try to prepare it, from data it does not have.
    if not tfds.builder(name, data_dir=data_dir).is_prepared():
      raise FileNotFoundError(
          f'TFDS dataset {name!r} is not prepared in {data_dir}: prepare it once with its '
          f'builder (metaiqa_jax.data.tfds), e.g. builder(data_dir=...).download_and_prepare('
          f'download_config=tfds.download.DownloadConfig(manual_dir=NATIVE_FOLDER), '
          f"file_format='array_record')")
    self._records = tfds.data_source(name, data_dir=data_dir, split=split, download=False,
                                     decoders={'image': tfds.decode.SkipDecoding()})
    self._meta = None

  def __len__(self) -> int:
    return len(self._records)

  @staticmethod
  def _labels(raw: Dict) -> Dict:
    out = {'mos': float(raw['mos']), 'mos_norm': float(raw['mos_norm']),
           'name': raw['name'].decode() if isinstance(raw['name'], bytes) else str(raw['name'])}
    out.update({k: int(raw[k]) for k in _INT_KEYS})
    return out

  def __getitem__(self, index) -> Dict:
    raw = self._records[normalize_index(index, len(self))]
    record = self._labels(raw)
    record['image'] = decode_image(raw['image'], f'{self.name}:{record["name"]}', self.max_side)
    return record

  def metadata(self) -> Dict[str, np.ndarray]:
    if self._meta is None:
      rows = [self._labels(self._records[i]) for i in range(len(self))]
      dtypes = {'mos': np.float64, 'mos_norm': np.float64, 'name': str}
      self._meta = {k: np.asarray([r[k] for r in rows], dtypes.get(k, np.int64))
                    for k in METADATA_KEYS}
      for value in self._meta.values():
        value.setflags(write=False)
    return dict(self._meta)

  def __repr__(self) -> str:
    return f'TFDSSource({self.name!r}, {len(self)} records)'

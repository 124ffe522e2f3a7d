"""`make_source(name, root, **kwargs)`: a dataset source by name.

Native layouts are read from their folders (`SOURCE_NAMES`). A name `tfds:NAME` reads the TFDS
dataset NAME prepared by the builders of `metaiqa_jax.data.tfds` (ArrayRecord files, random
access, no TensorFlow) from the data dir `root`: e.g. `data.sources=('tfds:metaiqa_kadid10k',)`
with `data.roots=('~/tensorflow_datasets',)`, or `finetune.source='tfds:metaiqa_livec'`. Both
kinds give the same records (checked in the tests), so every program takes either.
"""

import os

from metaiqa_jax.data.csv_dataset import CSVDataset
from metaiqa_jax.data.kadid10k import KADID10k
from metaiqa_jax.data.koniq10k import KonIQ10k
from metaiqa_jax.data.livec import LIVEChallenge
from metaiqa_jax.data.synthetic import SyntheticBank
from metaiqa_jax.data.tid2013 import TID2013

SOURCE_NAMES = ('kadid10k', 'tid2013', 'livec', 'koniq10k', 'cid2013', 'csv', 'synthetic')
TFDS_PREFIX = 'tfds:'
CID2013_CSV = 'cid2013.csv'


def _cid2013(root, csv_path=None, **kwargs):
  """CID2013 via a label table of names and MOS (default <root>/cid2013.csv, see
  `CSVDataset`), MOS 0..100 -> mos / 100."""
  csv_path = csv_path or os.path.join(root, CID2013_CSV)
  kwargs.setdefault('mos_range', (0.0, 100.0))
  return CSVDataset(csv_path, root, dataset='CID2013', **kwargs)


def _csv(root, csv_path=None, **kwargs):
  if csv_path is None:
    raise ValueError("make_source('csv') needs csv_path=... (a label table of image names and "
                     'scores); root is the image folder')
  return CSVDataset(csv_path, root, **kwargs)


def make_source(name: str, root=None, **kwargs):
  """Builds the source `name` (one of SOURCE_NAMES) reading the native layout under `root`.

  kwargs go to the class: e.g. resolution= for koniq10k, csv_path=/mos_range= for csv and
  cid2013, pristine=/types=/levels=/max_side=/seed= for synthetic (root, if given, is the
  pristine folder); split=/max_side= for tfds:NAME (root is the TFDS data dir).
  """
  if name.startswith(TFDS_PREFIX):
    if not root:
      raise ValueError(f'make_source({name!r}) needs root= (the TFDS data dir it was prepared '
                       'in)')
    from metaiqa_jax.data.tfds import TFDSSource  # pylint: disable=g-import-not-at-top
    return TFDSSource(name[len(TFDS_PREFIX):], os.path.expanduser(root), **kwargs)
  if name == 'synthetic':
    if root is not None:
      kwargs.setdefault('pristine', root)
    return SyntheticBank(**kwargs)
  builders = {'kadid10k': KADID10k, 'tid2013': TID2013, 'livec': LIVEChallenge,
              'koniq10k': KonIQ10k, 'cid2013': _cid2013, 'csv': _csv}
  if name not in builders:
    raise ValueError(f'unknown source {name!r}; valid names: {", ".join(SOURCE_NAMES)}, or '
                     f'{TFDS_PREFIX}NAME for a prepared TFDS dataset')
  if root is None:
    raise ValueError(f'make_source({name!r}) needs root= (the dataset folder)')
  return builders[name](root, **kwargs)


class DatasetError(ValueError):
  """A dataset named by the config does not read (a malformed label table, a bad value); the
  message names the config key, the source and the file line."""


def open_source(name: str, root: str, config_key: str, **kwargs):
  """`make_source(name, root or None, **kwargs)`, its label-table errors as `DatasetError`.

  Args:
    config_key: the config keys that named the source (for the message), e.g.
      `'config.finetune.source'`.

  Raises:
    DatasetError: the reader refused the label table (its message names the file and line).
    FileNotFoundError: the label table or image files are missing.
  """
  try:
    return make_source(name, root or None, **kwargs)
  except ValueError as e:
    raise DatasetError(f'{config_key} {name!r} (root {root!r}): {e}') from e

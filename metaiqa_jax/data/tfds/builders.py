"""TFDS builders for every source, preparing ArrayRecord files without TensorFlow.

Each builder reads the dataset's native layout from `manual_dir` with the package's reader
(`KADID10k`, `TID2013`, ...) and stores, per record, the image file's original encoded bytes
(or, for the synthetic bank, a lossless PNG of the generated image) plus the reader's labels.
Everything lands in one `train` split; evaluation splits come from `metaiqa_jax.data.splits`.

Prepare (no TensorFlow needed; `file_format='array_record'` is required for that):

    builder = MetaiqaKadid10k(data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR),
        file_format='array_record')

and read with `metaiqa_jax.data.tfds.TFDSSource('metaiqa_kadid10k', DATA_DIR)` (which decodes
with Pillow exactly like the reader) or `tfds.data_source`. `as_dataset`/`tfds.load` need
TensorFlow and are not used.
"""

import abc
import inspect
import io
import os
from typing import Optional, Sequence, Tuple

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from metaiqa_jax.data.csv_dataset import CSVDataset
from metaiqa_jax.data.kadid10k import KADID10k
from metaiqa_jax.data.koniq10k import RESOLUTIONS, KonIQ10k
from metaiqa_jax.data.livec import LIVEChallenge
from metaiqa_jax.data.synthetic import DEFAULT_MAX_SIDE, SyntheticBank
from metaiqa_jax.data.tid2013 import TID2013


def _features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3)),
      # TFDS serialises floats as tf.train.Example float32, so labels are stored as float32.
      'mos': tfds.features.Scalar(dtype=np.float32, doc='label on the native scale'),
      'mos_norm': tfds.features.Scalar(dtype=np.float32, doc='label on the (0, 1) scale'),
      'dist_type': tfds.features.Scalar(dtype=np.int64, doc='-1 for authentic'),
      'dist_level': tfds.features.Scalar(dtype=np.int64, doc='0 when none'),
      'ref_id': tfds.features.Scalar(dtype=np.int64, doc='-1 when unknown'),
      'name': tfds.features.Text(),
  })


def _labels(meta, i: int) -> dict:
  return {'mos': float(meta['mos'][i]), 'mos_norm': float(meta['mos_norm'][i]),
          'dist_type': int(meta['dist_type'][i]), 'dist_level': int(meta['dist_level'][i]),
          'ref_id': int(meta['ref_id'][i]), 'name': str(meta['name'][i])}


class _Builder(tfds.core.GeneratorBasedBuilder, abc.ABC):
  """Version and code location shared by the builders."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  # TFDS 4.9.10 locates a builder's code through `importlib_resources` (a package it does not
  # install) whenever the builder lives in an installed package; point it at this file instead.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))


class _ReaderBuilder(_Builder):
  """Shared builder: one `train` split holding a reader's records (file bytes + labels)."""

  DESCRIPTION = ''
  HOMEPAGE = ''
  CITATION = ''

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=_features(), homepage=self.HOMEPAGE,
                                 citation=self.CITATION)

  @abc.abstractmethod
  def _make_reader(self, manual_dir: str):
    """The package reader over the native layout in `manual_dir`."""

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(self._make_reader(os.fspath(dl_manager.manual_dir)))}

  def _generate_examples(self, reader):
    meta = reader.metadata()
    for i in range(len(reader)):
      with open(reader.path(i), 'rb') as f:
        encoded = f.read()
      yield str(meta['name'][i]), {'image': encoded, **_labels(meta, i)}


class MetaiqaKadid10k(_ReaderBuilder):
  """KADID-10k: 10,125 images, 81 references x 25 distortion types x 5 levels."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Download kadid10k.zip from http://database.mmsp-kn.de/'
                                  'kadid-10k-database.html and extract it into manual_dir, so '
                                  'that manual_dir/kadid10k/dmos.csv and '
                                  'manual_dir/kadid10k/images/ exist.')
  DESCRIPTION = 'KADID-10k (DMOS 1..5; mos_norm = (dmos - 0.5) / 5).'
  HOMEPAGE = 'http://database.mmsp-kn.de/kadid-10k-database.html'
  CITATION = ('H. Lin, V. Hosu, D. Saupe. KADID-10k: A Large-scale Artificially Distorted IQA '
              'Database. QoMEX 2019.')

  def _make_reader(self, manual_dir):
    return KADID10k(manual_dir)


class MetaiqaTid2013(_ReaderBuilder):
  """TID2013: 3,000 images, 25 references x 24 distortion types x 5 levels."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Download tid2013.rar from https://www.ponomarenko.info/'
                                  'tid2013.htm and extract it into manual_dir, so that '
                                  'manual_dir/mos_with_names.txt and manual_dir/distorted_images/ '
                                  'exist.')
  DESCRIPTION = 'TID2013 (MOS 0..9; mos_norm = mos / 9).'
  HOMEPAGE = 'https://www.ponomarenko.info/tid2013.htm'
  CITATION = ('N. Ponomarenko et al. Image database TID2013: Peculiarities, results and '
              'perspectives. Signal Processing: Image Communication, 2015.')

  def _make_reader(self, manual_dir):
    return TID2013(manual_dir)


class MetaiqaLivec(_ReaderBuilder):
  """LIVE In the Wild Image Quality Challenge: 1,162 authentically distorted images."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Download ChallengeDB_release.zip from https://live.ece.'
                                  'utexas.edu/research/ChallengeDB/ and extract it into '
                                  'manual_dir, so that manual_dir/Images/ and '
                                  'manual_dir/Data/AllMOS_release.mat exist.')
  DESCRIPTION = 'LIVE Challenge (MOS 0..100; mos_norm = mos / 100; 7 training images dropped).'
  HOMEPAGE = 'https://live.ece.utexas.edu/research/ChallengeDB/'
  CITATION = ('D. Ghadiyaram, A. C. Bovik. Massive Online Crowdsourced Study of Subjective and '
              'Objective Picture Quality. IEEE TIP, 2016.')

  def _make_reader(self, manual_dir):
    return LIVEChallenge(manual_dir)


class MetaiqaKoniq10k(_ReaderBuilder):
  """KonIQ-10k: 10,073 authentically distorted images; configs select the resolution."""

  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=r, description=f'images from {r}/')
                     for r in RESOLUTIONS]
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Download koniq10k_distributions_sets.csv (or '
                                  'koniq10k_scores_and_distributions.csv) and '
                                  'koniq10k_1024x768.zip (or _512x384) from '
                                  'http://database.mmsp-kn.de/koniq-10k-database.html into '
                                  'manual_dir, so that manual_dir/1024x768/ (or 512x384/) holds '
                                  'the images.')
  DESCRIPTION = ('KonIQ-10k (MOS 0..100 in the sets file, 1..5 in the scores file; mos_norm maps '
                 'either onto 0..1).')
  HOMEPAGE = 'http://database.mmsp-kn.de/koniq-10k-database.html'
  CITATION = ('V. Hosu, H. Lin, T. Sziranyi, D. Saupe. KonIQ-10k: An Ecologically Valid Database '
              'for Deep Learning of Blind Image Quality Assessment. IEEE TIP, 2020.')

  def _make_reader(self, manual_dir):
    return KonIQ10k(manual_dir, resolution=self.builder_config.name)


class MetaiqaCsv(_ReaderBuilder):
  """Any set given as a `name,mos[,std]` CSV plus images (see `CSVDataset`).

  Args (besides the DatasetBuilder ones; only needed when preparing):
    csv_name: the label file inside manual_dir; image names are relative to manual_dir.
    mos_range: (lo, hi) rating scale for mos_norm; None uses the file's min and max.
    higher_is_better: False for DMOS-like scales.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Put the images and a labels.csv ("name,mos[,std]", names '
                                  'relative to manual_dir) into manual_dir.')
  DESCRIPTION = 'Images with labels from a generic name,mos[,std] CSV.'
  DEFAULT_CSV_NAME = 'labels.csv'
  DEFAULT_MOS_RANGE: Optional[Tuple[float, float]] = None

  def __init__(self, *, csv_name: Optional[str] = None,
               mos_range: Optional[Tuple[float, float]] = None, higher_is_better: bool = True,
               **kwargs):
    self._csv_name = csv_name or self.DEFAULT_CSV_NAME
    self._mos_range = mos_range if mos_range is not None else self.DEFAULT_MOS_RANGE
    self._higher_is_better = higher_is_better
    super().__init__(**kwargs)

  def _make_reader(self, manual_dir):
    return CSVDataset(os.path.join(manual_dir, self._csv_name), manual_dir,
                      mos_range=self._mos_range, higher_is_better=self._higher_is_better,
                      dataset=self.name)


class MetaiqaCid2013(MetaiqaCsv):
  """CID2013 (camera image database), from a `name,mos[,std]` CSV; MOS 0..100 -> mos / 100."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Put the CID2013 images and cid2013.csv ("name,mos[,std]", '
                                  'realigned MOS 0..100, names relative to manual_dir) into '
                                  'manual_dir.')
  DESCRIPTION = 'CID2013 (MOS 0..100; mos_norm = mos / 100).'
  CITATION = ('T. Virtanen, M. Nuutinen, M. Vaahteranoksa, P. Oittinen, J. Hakkinen. CID2013: A '
              'Database for Evaluating No-Reference Image Quality Assessment Algorithms. IEEE '
              'TIP, 2015.')
  DEFAULT_CSV_NAME = 'cid2013.csv'
  DEFAULT_MOS_RANGE = (0.0, 100.0)


class MetaiqaSynthetic(_Builder):
  """The synthetic KADID-style bank (`SyntheticBank`) stored as lossless PNGs.

  Args (besides the DatasetBuilder ones; only needed when preparing): pristine (None for the
  bundled photos, or a folder), types, levels, max_side, seed, as for `SyntheticBank`. No
  manual_dir is needed.
  """

  def __init__(self, *, pristine=None, types: Sequence[int] = range(1, 26),
               levels: Sequence[int] = range(1, 6), max_side: Optional[int] = DEFAULT_MAX_SIDE,
               seed: int = 0, **kwargs):
    self._bank_args = dict(pristine=pristine, types=tuple(types), levels=tuple(levels),
                           max_side=max_side, seed=seed)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, features=_features(),
        description='Pristine photos x KADID-10k distortions x levels, labelled with the '
                    'KADID-10k human mean DMOS of the (type, level); mos_norm = (dmos - 0.5) / 5.',
        citation='H. Lin, V. Hosu, D. Saupe. KADID-10k: A Large-scale Artificially Distorted '
                 'IQA Database. QoMEX 2019.')

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(SyntheticBank(lazy=True, **self._bank_args))}

  def _generate_examples(self, bank):
    meta = bank.metadata()
    for i in range(len(bank)):
      buf = io.BytesIO()
      Image.fromarray(bank[i]['image']).save(buf, format='PNG')
      yield str(meta['name'][i]), {'image': buf.getvalue(), **_labels(meta, i)}

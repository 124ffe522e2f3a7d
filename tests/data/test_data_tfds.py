"""Every TFDS builder prepared from dummy native data (ArrayRecord, no TensorFlow) and read back
through `tfds.data_source` via `TFDSSource`: records equal to the package reader's."""

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from metaiqa_jax.data import (CSVDataset, KADID10k, KonIQ10k, LIVEChallenge, SyntheticBank,
                              TID2013, make_source)
from metaiqa_jax.data.tfds import (MetaiqaCid2013, MetaiqaCsv, MetaiqaKadid10k,
                                   MetaiqaKoniq10k, MetaiqaLivec, MetaiqaSynthetic,
                                   MetaiqaTid2013, TFDSSource)
from metaiqa_jax.data.tasks import TaskSampler
from metaiqa_jax.preprocess import InputSpec

import data_layouts

FLOAT32_KEYS = ('mos', 'mos_norm')  # stored as float32 by TFDS
SYNTHETIC_ARGS = dict(pristine=data_layouts.tiny_pristine(2), types=(1, 10), levels=(1, 5),
                      max_side=None)

# (builder, tfds name with config, native folder, the reader over the same data)
CASES = {
    'kadid10k': (MetaiqaKadid10k, 'metaiqa_kadid10k', 'kadid', lambda r: KADID10k(r)),
    'tid2013': (MetaiqaTid2013, 'metaiqa_tid2013', 'tid', lambda r: TID2013(r)),
    'livec': (MetaiqaLivec, 'metaiqa_livec', 'livec', lambda r: LIVEChallenge(r)),
    'koniq10k': (MetaiqaKoniq10k, 'metaiqa_koniq10k/1024x768', 'koniq',
                 lambda r: KonIQ10k(r)),
    'csv': (MetaiqaCsv, 'metaiqa_csv', 'csv',
            lambda r: CSVDataset(r / 'labels.csv', r)),
    'cid2013': (MetaiqaCid2013, 'metaiqa_cid2013', 'cid',
                lambda r: CSVDataset(r / 'cid2013.csv', r, mos_range=(0, 100))),
}


def _assert_same_records(reader, prepared):
  assert len(prepared) == len(reader)
  ours = reader.metadata()
  theirs = prepared.metadata()
  order = np.argsort(theirs['name'])
  back = np.argsort(ours['name'])
  for key in ours:
    if key in FLOAT32_KEYS:
      np.testing.assert_allclose(theirs[key][order], ours[key][back], rtol=1e-7, err_msg=key)
    else:
      np.testing.assert_array_equal(theirs[key][order], ours[key][back], err_msg=key)
  for i in range(len(prepared)):
    rec = prepared[i]
    j = int(np.flatnonzero(ours['name'] == rec['name'])[0])
    expected = reader[j]
    np.testing.assert_array_equal(rec['image'], expected['image'])
    assert set(rec) == set(expected)
    for key in set(rec) - {'image'}:
      if key in FLOAT32_KEYS:
        assert rec[key] == np.float32(expected[key]), key
      else:
        assert rec[key] == expected[key] and type(rec[key]) is type(expected[key]), key


def _prepare(builder, data_dir, manual_dir=None, config=None, **kwargs):
  b = builder(data_dir=str(data_dir), config=config, **kwargs)
  b.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=None if manual_dir is None else str(manual_dir)),
      file_format='array_record')


@pytest.mark.parametrize('case', sorted(CASES))
def test_builder_round_trip(case, native_root, tmp_path):
  builder, name, folder, make_reader = CASES[case]
  config = name.split('/')[1] if '/' in name else None
  _prepare(builder, tmp_path, native_root / folder, config)
  _assert_same_records(make_reader(native_root / folder), TFDSSource(name, tmp_path))


def test_synthetic_builder_round_trip_and_feeds_task_sampler(tmp_path):
  _prepare(MetaiqaSynthetic, tmp_path, **SYNTHETIC_ARGS)
  prepared = TFDSSource('metaiqa_synthetic', tmp_path)
  _assert_same_records(SyntheticBank(lazy=True, **SYNTHETIC_ARGS), prepared)
  sampler = TaskSampler(prepared, support_size=2, query_size=2, tasks_per_batch=2,
                        inputs=InputSpec(16))
  x, y = sampler.sample(0)['support']
  assert x.shape == (2, 2, 16, 16, 3) and y.shape == (2, 2)


def test_builder_reports_missing_manual_data(tmp_path):
  (tmp_path / 'manual').mkdir()
  (tmp_path / 'manual' / 'unrelated.txt').write_text('x')
  with pytest.raises(FileNotFoundError, match='dmos.csv'):
    _prepare(MetaiqaKadid10k, tmp_path / 'data', tmp_path / 'manual')


def test_tfds_sources_by_name_and_refusals(native_root, tmp_path):
  _prepare(MetaiqaLivec, tmp_path / 'tfds', native_root / 'livec')
  _assert_same_records(LIVEChallenge(native_root / 'livec'),
                       make_source('tfds:metaiqa_livec', str(tmp_path / 'tfds')))
  with pytest.raises(ValueError, match="no TFDS dataset named 'metaiqa_nope'.*metaiqa_livec"):
    make_source('tfds:metaiqa_nope', str(tmp_path / 'tfds'))
  with pytest.raises(FileNotFoundError, match="'metaiqa_kadid10k' is not prepared in"):
    make_source('tfds:metaiqa_kadid10k', str(tmp_path / 'tfds'))
  assert not list((tmp_path / 'tfds').rglob('metaiqa_kadid10k*.array_record*'))  # none made
  with pytest.raises(ValueError, match='needs root'):
    make_source('tfds:metaiqa_livec')


def test_no_tensorflow_imported():
  assert 'tensorflow' not in sys.modules

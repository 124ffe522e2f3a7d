"""Dataset readers on dummy data in each native layout; make_source; missing-file errors."""

import os
import shutil

import numpy as np
import pytest

from metaiqa_jax.data import (CSVDataset, KADID10k, KonIQ10k, LIVEChallenge, TID2013,
                              make_source)
from metaiqa_jax.images import read_image
import data_layouts


def _check_contract(src):
  meta = src.metadata()
  assert set(meta) == {'mos', 'mos_norm', 'dist_type', 'dist_level', 'ref_id', 'name'}
  for key, value in meta.items():
    assert value.shape == (len(src),), key
  for i in (0, len(src) - 1, -1):
    rec = src[i]
    assert rec['image'].dtype == np.uint8 and rec['image'].shape == data_layouts.IMAGE_HW + (3,)
    j = i % len(src)
    np.testing.assert_array_equal(rec['image'], read_image(src.path(j)))
    for key in meta:
      assert rec[key] == meta[key][j], key
  with pytest.raises(IndexError):
    src[len(src)]


def test_kadid(native_root):
  src = KADID10k(native_root / 'kadid')  # the folder holding kadid10k/
  assert len(src) == 8
  _check_contract(src)
  meta = src.metadata()
  i = list(meta['name']).index('I02_10_02.png')
  assert (meta['ref_id'][i], meta['dist_type'][i], meta['dist_level'][i]) == (2, 10, 2)
  assert meta['mos'][i] == pytest.approx(4.5 - 2 - 1.0)
  assert meta['mos_norm'][i] == pytest.approx((meta['mos'][i] - 0.5) / 5)
  assert len(KADID10k(native_root / 'kadid' / 'kadid10k')) == 8


def test_tid2013_matches_mixed_case_names(native_root):
  src = TID2013(native_root / 'tid')
  assert len(src) == 8
  _check_contract(src)
  meta = src.metadata()
  i = list(meta['name']).index('i02_01_1.bmp')
  assert os.path.basename(src.path(i)) == 'I02_01_1.BMP'
  assert (meta['ref_id'][i], meta['dist_type'][i], meta['dist_level'][i]) == (2, 1, 1)
  np.testing.assert_allclose(meta['mos_norm'], meta['mos'] / 9)


def test_livec_drops_training_images(native_root):
  src = LIVEChallenge(native_root / 'livec')
  assert list(src.metadata()['name']) == ['10.JPG', '11.bmp', '12.bmp']
  _check_contract(src)
  meta = src.metadata()
  np.testing.assert_allclose(meta['mos'], np.linspace(20, 80, 10)[7:])
  np.testing.assert_allclose(meta['mos_norm'], meta['mos'] / 100)
  assert (meta['dist_type'] == -1).all() and (meta['ref_id'] == -1).all()
  assert (meta['dist_level'] == 0).all()
  everything = LIVEChallenge(native_root / 'livec', drop_training_images=False)
  assert len(everything) == 10 and 'trainingImages' in everything.path(0)


def test_koniq(native_root):
  src = KonIQ10k(native_root / 'koniq')
  _check_contract(src)
  meta = src.metadata()
  np.testing.assert_allclose(meta['mos'], [3.84, 1.53, 4.12])
  np.testing.assert_allclose(meta['mos_norm'], (meta['mos'] - 1) / 4)
  with pytest.raises(ValueError, match='resolution'):
    KonIQ10k(native_root / 'koniq', resolution='800x600')
  with pytest.raises(FileNotFoundError, match='512x384'):
    KonIQ10k(native_root / 'koniq', resolution='512x384')


def test_generic_csv_and_cid2013(native_root):
  src = CSVDataset(native_root / 'csv' / 'labels.csv', native_root / 'csv', mos_range=(0, 100))
  _check_contract(src)
  np.testing.assert_allclose(src.metadata()['mos_norm'], [0.1, 0.55, 0.9])
  by_file = CSVDataset(native_root / 'csv' / 'labels.csv', native_root / 'csv')
  np.testing.assert_allclose(by_file.metadata()['mos_norm'], [0.0, 0.5625, 1.0])
  dmos = CSVDataset(native_root / 'csv' / 'labels.csv', native_root / 'csv',
                    mos_range=(0, 100), higher_is_better=False)
  np.testing.assert_allclose(dmos.metadata()['mos_norm'], [0.9, 0.45, 0.1])
  cid = make_source('cid2013', native_root / 'cid')
  np.testing.assert_allclose(cid.metadata()['mos_norm'], [0.1, 0.55, 0.9])


def test_headerless_csv(tmp_path):
  data_layouts.write_image(str(tmp_path / 'x.png'), 0)
  (tmp_path / 'l.csv').write_text('x.png,3.5\n')
  src = CSVDataset(tmp_path / 'l.csv', tmp_path, mos_range=(1, 5))
  assert src[0]['mos'] == 3.5 and src[0]['mos_norm'] == pytest.approx(0.625)
  (tmp_path / 'bad.csv').write_text('name,mos\nx.png,good\n')
  with pytest.raises(ValueError, match=r'bad.csv:2'):
    CSVDataset(tmp_path / 'bad.csv', tmp_path)


def test_make_source(native_root):
  assert len(make_source('kadid10k', native_root / 'kadid')) == 8
  assert len(make_source('tid2013', native_root / 'tid')) == 8
  assert len(make_source('livec', native_root / 'livec')) == 3
  assert len(make_source('koniq10k', native_root / 'koniq')) == 3
  assert len(make_source('csv', native_root / 'csv', csv_path=native_root / 'csv' /
                         'labels.csv')) == 3
  bank = make_source('synthetic', pristine=data_layouts.tiny_pristine(2), types=[1], levels=[1, 2],
                     lazy=True)
  assert len(bank) == 4
  with pytest.raises(ValueError, match='kadid10k, tid2013, livec, koniq10k, cid2013, csv'):
    make_source('kadid', native_root / 'kadid')


def test_missing_files_one_error_with_names_and_count(native_root, tmp_path):
  root = tmp_path / 'kadid'
  shutil.copytree(native_root / 'kadid', root)
  images = root / 'kadid10k' / 'images'
  removed = sorted(f for f in os.listdir(images) if '_' in f)[:7]
  for f in removed:
    os.remove(images / f)
  with pytest.raises(FileNotFoundError) as err:
    KADID10k(root)
  message = str(err.value)
  assert '7 of 8 image files are missing' in message
  assert removed[0] in message and 'and 2 more' in message


def test_unreadable_file_names_it(native_root, tmp_path):
  root = tmp_path / 'koniq'
  shutil.copytree(native_root / 'koniq', root)
  (root / '1024x768' / '826373.jpg').write_bytes(b'not a jpeg')
  src = KonIQ10k(root)
  with pytest.raises(ValueError, match='826373.jpg'):
    src[0]

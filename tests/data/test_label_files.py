"""Label files as distributed or re-saved (BOM, CRLF, tab/semicolon/whitespace, headerless,
mixed-case names, 0..100 scales, both KonIQ-10k files) read correctly, and the real label files
in ../shared/data (skipped where absent) give the published counts and ranges.

Fixtures are committed byte-exact under fixtures/labels/; images are placeholders written next
to them in tmp_path (empty files where nothing is decoded: `FileSource` checks existence only).
"""

import csv
import logging
import os
import shutil

import numpy as np
import pytest

import data_layouts
from metaiqa_jax import configlib
from metaiqa_jax.data import CSVDataset, KADID10k, KonIQ10k, LIVEChallenge, TID2013
from metaiqa_jax.data.base import resolve_paths
from metaiqa_jax.data.label_table import read_table
from metaiqa_jax.train import defaults

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'labels')
SHARED = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'data')
REAL_LABELS = os.path.join(SHARED, 'real_labels')
LIVEC_DEV = os.path.join(SHARED, 'livec_dev', 'ChallengeDB_release')
KONIQ_NAMES = ['10004473376.jpg', '10007357496.jpg', '10007903636.jpg', '10009096245.jpg',
               '100117038.jpg', '10012003.jpg']


def _touch(root, names):
  """Empty placeholder files root/name."""
  for name in names:
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').close()


def _fixture(tmp_path, name):
  """Copies fixture `name` (a file or folder) into tmp_path; returns the copy's path."""
  source, target = os.path.join(FIXTURES, name), tmp_path / name
  if os.path.isdir(source):
    shutil.copytree(source, target)
  else:
    shutil.copy(source, target)
  return target


# Generic CSV.

def test_bom_crlf_csv_reads_names_and_scores(tmp_path):
  table = _fixture(tmp_path, 'bom_crlf.csv')
  assert table.read_bytes().startswith(b'\xef\xbb\xbfname,MOS') and b'\r\n' in table.read_bytes()
  _touch(tmp_path, ['photos/a.png', 'photos/b.png', 'photos/c.png'])
  meta = CSVDataset(table, tmp_path, mos_range=(0, 100)).metadata()
  assert list(meta['name']) == ['photos/a.png', 'photos/b.png', 'photos/c.png']
  np.testing.assert_allclose(meta['mos'], [12.5, 55, 90.25])
  np.testing.assert_allclose(meta['mos_norm'], [0.125, 0.55, 0.9025])


def test_utf16_table_reads(tmp_path):
  text = open(os.path.join(FIXTURES, 'bom_crlf.csv'), encoding='utf-8-sig', newline='').read()
  (tmp_path / 'u16.csv').write_bytes(text.encode('utf-16'))  # With its BOM, as Excel saves.
  _touch(tmp_path, ['photos/a.png', 'photos/b.png', 'photos/c.png'])
  np.testing.assert_allclose(CSVDataset(tmp_path / 'u16.csv', tmp_path).metadata()['mos'],
                             [12.5, 55, 90.25])


@pytest.mark.parametrize('name, delimiter, header', [
    ('tab_headerless.tsv', '\t', None), ('semicolon.csv', ';', ('image', 'mos', 'std')),
    ('whitespace.txt', None, ('file', 'score'))])
def test_delimiters_and_headerless(tmp_path, name, delimiter, header):
  table = read_table(os.path.join(FIXTURES, name))
  assert (table.delimiter, table.header) == (delimiter, header)
  for i, image in enumerate(('a.png', 'b.png', 'c.png')):
    data_layouts.write_image(str(tmp_path / image), i)
  src = CSVDataset(os.path.join(FIXTURES, name), tmp_path, mos_range=(1, 5))
  meta = src.metadata()
  assert list(meta['name']) == ['a.png', 'b.png', 'c.png']  # A headerless first row is a record.
  np.testing.assert_allclose(meta['mos'], [3.5, 1.25, 4.75])  # Decimal commas in semicolon.csv.
  np.testing.assert_allclose(meta['mos_norm'], [0.625, 0.0625, 0.9375])
  assert src[0]['image'].shape == data_layouts.IMAGE_HW + (3,)


def test_columns_by_name_and_names_ignoring_case(tmp_path, caplog):
  for i, image in enumerate(('photos/a.jpg', 'photos/b.png', 'photos/c.png')):
    data_layouts.write_image(str(tmp_path / image), i)
  with caplog.at_level(logging.INFO, logger='metaiqa_jax.data.csv_dataset'):
    src = CSVDataset(os.path.join(FIXTURES, 'mixed_case.csv'), tmp_path, mos_range=(0, 100))
  assert "image name from column 1 'Image_Name', MOS from column 3 'MOS_Mean'" in caplog.text
  np.testing.assert_allclose(src.metadata()['mos'], [61.5, 20.0, 88.0])  # Not column 2 (c1).
  assert list(src.metadata()['name']) == ['Photos/A.JPG', 'photos/B.png', 'PHOTOS/c.PNG']
  assert src.path(0) == str(tmp_path / 'photos' / 'a.jpg')
  assert src[2]['image'].shape == data_layouts.IMAGE_HW + (3,)


def test_scores_outside_mos_range_name_line_and_scale(tmp_path):
  _touch(tmp_path, ['a.png', 'b.png', 'c.png'])
  table = os.path.join(FIXTURES, 'out_of_range.csv')
  with pytest.raises(ValueError, match=f'{table}:3: MOS 101.5 is outside 0..100, the rating scale '
                     r'given as mos_range \(1 more values'):
    CSVDataset(table, tmp_path, mos_range=(0, 100))
  np.testing.assert_allclose(CSVDataset(table, tmp_path).metadata()['mos_norm'],
                             [43 / 104.5, 1, 0])  # No mos_range: the file's own min..max.


def test_table_errors_name_file_and_line(tmp_path):
  _touch(tmp_path, ['a.png'])
  (tmp_path / 'no_score.csv').write_text('name,std\na.png,0.3\n')
  with pytest.raises(ValueError, match=r"no_score.csv:1: no score column \(one of mos, .*\['name', "
                     r"'std'\]"):
    CSVDataset(tmp_path / 'no_score.csv', tmp_path)
  (tmp_path / 'latin1.csv').write_bytes(b'name,mos\na.png,3\nb\xe9.png,4\n')
  with pytest.raises(ValueError, match=r'latin1.csv:3: not utf-8 text \(byte 0xe9\)'):
    CSVDataset(tmp_path / 'latin1.csv', tmp_path)


def test_resolve_paths_ignores_case_of_folders_and_files(tmp_path):
  _touch(tmp_path, ['Images/trainingImages/t1.bmp', 'Images/10.jpg', 'exact.JPG'])
  resolved = resolve_paths(str(tmp_path), ['images/TRAININGIMAGES/T1.BMP', 'Images/10.JPG',
                                           'exact.JPG', 'Images/none.jpg'])
  assert resolved == [str(tmp_path / 'Images/trainingImages/t1.bmp'),
                      str(tmp_path / 'Images/10.jpg'), str(tmp_path / 'exact.JPG'),
                      str(tmp_path / 'Images/none.jpg')]
  assert resolve_paths('/elsewhere', [str(tmp_path / 'EXACT.jpg')]) == [
      str(tmp_path / 'exact.JPG')]


# KonIQ-10k: either label file.

def test_koniq_sets_file_0_to_100_with_official_split(tmp_path, caplog):
  root = _fixture(tmp_path, 'koniq_sets')
  assert (root / 'koniq10k_distributions_sets.csv').read_bytes().startswith(b'\xef\xbb\xbf')
  _touch(root, [f'1024x768/{n}' for n in KONIQ_NAMES])
  with caplog.at_level(logging.INFO, logger='metaiqa_jax.data.koniq10k'):
    src = KonIQ10k(root)
  assert "koniq10k_distributions_sets.csv: image name from column 1 'image_name', MOS from " \
      "column 8 'MOS', set from column 10 'set' (comma-separated, header on line 1); MOS scale " \
      '0..100' in caplog.text
  meta = src.metadata()
  assert list(meta['name']) == KONIQ_NAMES
  np.testing.assert_allclose(meta['mos'], [77.3836206897, 68.7285714286, 70, 57, 52.5, 80])
  np.testing.assert_allclose(meta['mos_norm'], meta['mos'] / 100)
  (split,) = src.official_splits()
  assert {k: v.tolist() for k, v in split.items()} == {'train': [0, 3, 5], 'val': [2],
                                                       'test': [1, 4]}


def test_koniq_scores_file_1_to_5_and_preference(tmp_path):
  root = _fixture(tmp_path, 'koniq_scores')
  _touch(root, [f'512x384/{n}' for n in KONIQ_NAMES])
  src = KonIQ10k(root, resolution='512x384')
  np.testing.assert_allclose(src.metadata()['mos_norm'], (src.metadata()['mos'] - 1) / 4)
  assert src.metadata()['mos_norm'].min() == pytest.approx(0.5)
  assert src.official_splits() is None
  shutil.copy(os.path.join(FIXTURES, 'koniq_sets', 'koniq10k_distributions_sets.csv'), root)
  both = KonIQ10k(root, resolution='512x384')  # The sets file wins: it carries the split.
  assert both.table.endswith('koniq10k_distributions_sets.csv')
  assert both.metadata()['mos'][0] == pytest.approx(77.3836206897)


def test_koniq_reads_the_512x384_folder_when_it_is_the_only_one(tmp_path, caplog):
  root = _fixture(tmp_path, 'koniq_scores')
  _touch(root, [f'512x384/{n}' for n in KONIQ_NAMES])
  with caplog.at_level(logging.INFO, logger='metaiqa_jax.data.koniq10k'):
    src = KonIQ10k(root)
  assert 'no 1024x768/ folder; reading the 512x384/ images' in caplog.text
  assert all(os.sep + '512x384' + os.sep in src.path(i) for i in range(len(src)))
  _touch(root, [f'1024x768/{n}' for n in KONIQ_NAMES])
  assert os.sep + '1024x768' + os.sep in KonIQ10k(root).path(0)


def test_koniq_scale_mismatches_name_file_scale_and_line(tmp_path):
  sets = os.path.join(FIXTURES, 'koniq_sets', 'koniq10k_distributions_sets.csv')
  scores = os.path.join(FIXTURES, 'koniq_scores', 'koniq10k_scores_and_distributions.csv')
  os.makedirs(tmp_path / 'a')
  shutil.copy(sets, tmp_path / 'a' / 'koniq10k_scores_and_distributions.csv')
  with pytest.raises(ValueError, match=r'koniq10k_scores_and_distributions.csv:2: MOS 77.3836 '
                     r'is outside 1..5, the MOS scale of koniq10k_scores_and_distributions.csv'):
    KonIQ10k(tmp_path / 'a')
  os.makedirs(tmp_path / 'b')
  shutil.copy(scores, tmp_path / 'b' / 'koniq10k_distributions_sets.csv')
  with pytest.raises(ValueError, match=r'koniq10k_distributions_sets.csv:1: no set column'):
    KonIQ10k(tmp_path / 'b')
  os.makedirs(tmp_path / 'c')
  (tmp_path / 'c' / 'koniq10k_distributions_sets.csv').write_text(
      'image_name,MOS,set\n10004473376.jpg,3.83,training\n10007357496.jpg,3.5,test\n')
  with pytest.raises(ValueError, match='every MOS is at most 5, as on the 1..5 scale of '
                     'koniq10k_scores_and_distributions.csv, not the 0..100 scale'):
    KonIQ10k(tmp_path / 'c')
  with pytest.raises(FileNotFoundError, match='neither koniq10k_distributions_sets.csv nor '
                     'koniq10k_scores_and_distributions.csv'):
    KonIQ10k(tmp_path)


def test_official_split_for_finetuning(tmp_path):
  from metaiqa_jax.train import setup  # pylint: disable=g-import-not-at-top  (slow import)
  root = _fixture(tmp_path, 'koniq_sets')
  _touch(root, [f'1024x768/{n}' for n in KONIQ_NAMES])
  ft = defaults.base_config().finetune
  ft.source, ft.split_file = 'koniq10k', defaults.OFFICIAL_SPLIT
  (split,) = setup.load_or_make_splits(ft, KonIQ10k(root), tmp_path / 'run', seed=0)
  assert split['test'].tolist() == [1, 4]
  (saved,) = setup.splits.load_splits(tmp_path / 'run' / 'splits.json')
  assert {k: v.tolist() for k, v in saved.items()} == {k: v.tolist() for k, v in split.items()}
  scores = _fixture(tmp_path, 'koniq_scores')
  _touch(scores, [f'1024x768/{n}' for n in KONIQ_NAMES])
  with pytest.raises(configlib.ConfigError, match="finetune.split_file = 'official' asks for the "
                     "dataset's own split, but finetune.source = 'koniq10k'"):
    setup.load_or_make_splits(ft, KonIQ10k(scores), tmp_path / 'run2', seed=0)


# TID2013, KADID-10k, LIVE Challenge.

def test_tid2013_bom_crlf_mixed_case(tmp_path):
  root = _fixture(tmp_path, 'tid2013')
  _touch(root, ['distorted_images/i01_01_1.bmp', 'distorted_images/I01_01_2.bmp',
                'distorted_images/i01_02_1.BMP', 'distorted_images/i02_01_1.bmp'])
  src = TID2013(root)
  np.testing.assert_allclose(src.metadata()['mos'], [5.51429, 5.56757, 4.94444, 4.37838])
  assert src.path(0).endswith('i01_01_1.bmp') and src.path(2).endswith('i01_02_1.BMP')


def test_kadid_bom_crlf(tmp_path):
  root = _fixture(tmp_path, 'kadid10k')
  _touch(root, ['images/I01_01_01.png', 'images/I01_01_02.png', 'images/i02_10_05.PNG'])
  meta = KADID10k(tmp_path).metadata()
  np.testing.assert_allclose(meta['mos'], [4.57, 4.33, 1.0])
  assert (meta['ref_id'][2], meta['dist_type'][2], meta['dist_level'][2]) == (2, 10, 5)


def test_livec_lower_case_extensions_and_mat_entry_in_errors(tmp_path):
  root = str(tmp_path)
  data_layouts.make_livec(root)
  os.rename(os.path.join(root, 'Images', '10.JPG'), os.path.join(root, 'Images', '10.jpg'))
  src = LIVEChallenge(root)
  assert src.path(0) == os.path.join(root, 'Images', '10.jpg')
  assert src[0]['name'] == '10.JPG'
  os.remove(os.path.join(root, 'Images', '11.bmp'))
  with pytest.raises(FileNotFoundError, match=r'1 of 3 image files are missing: .*11.bmp '
                     r'\(listed at .*AllImages_release.mat entry 9\)'):
    LIVEChallenge(root)


# The real label files (../shared/data), with placeholder images.

def _real(*parts):
  path = os.path.join(REAL_LABELS, *parts)
  if not os.path.isfile(path):
    pytest.skip(f'{path} is absent')
  return path


def test_real_tid2013(tmp_path):
  table = _real('tid2013', 'mos_with_names.txt')
  os.symlink(table, tmp_path / 'mos_with_names.txt')
  with open(table) as f:
    _touch(tmp_path, [f'distorted_images/{line.split()[1].lower()}' for line in f if line.strip()])
  meta = TID2013(tmp_path).metadata()
  assert len(meta['mos']) == 3000
  assert (meta['mos'].min(), meta['mos'].max()) == pytest.approx((0.24242, 7.21429))
  assert sorted(set(meta['dist_type'])) == list(range(1, 25)) and meta['ref_id'].max() == 25


def test_real_kadid10k(tmp_path):
  table = _real('kadid10k', 'dmos.csv')
  os.symlink(table, tmp_path / 'dmos.csv')
  with open(table) as f:
    _touch(tmp_path, [f'images/{row["dist_img"]}' for row in csv.DictReader(f)])
  meta = KADID10k(tmp_path).metadata()
  assert len(meta['mos']) == 10125
  assert (meta['mos'].min(), meta['mos'].max()) == pytest.approx((1.0, 4.93))
  assert sorted(set(meta['dist_type'])) == list(range(1, 26))


def test_real_koniq10k_sets_file(tmp_path):
  table = _real('koniq10k', 'koniq10k_distributions_sets.csv')
  os.symlink(table, tmp_path / 'koniq10k_distributions_sets.csv')
  with open(table) as f:
    names = [row['image_name'] for row in csv.DictReader(f)]
  _touch(tmp_path, [f'1024x768/{n}' for n in names])
  src = KonIQ10k(tmp_path)
  meta = src.metadata()
  assert len(src) == 10073
  assert (meta['mos'].min(), meta['mos'].max()) == pytest.approx((3.91176470588, 88.3888888889))
  assert 0 <= meta['mos_norm'].min() and meta['mos_norm'].max() <= 1
  (split,) = src.official_splits()
  assert {k: len(v) for k, v in split.items()} == {'train': 7058, 'val': 1000, 'test': 2015}
  assert len(np.unique(np.concatenate(list(split.values())))) == 10073
  by_csv = CSVDataset(table, tmp_path / '1024x768', mos_range=(0, 100))  # MOS, not column 2.
  np.testing.assert_array_equal(by_csv.metadata()['mos'], meta['mos'])


def _livec_dev():
  if not os.path.isdir(LIVEC_DEV):
    pytest.skip(f'{LIVEC_DEV} is absent')
  return LIVEC_DEV


def test_real_livec_dev_half():
  src = LIVEChallenge(_livec_dev())
  meta = src.metadata()
  assert len(src) == 581
  assert (meta['mos'].min(), meta['mos'].max()) == pytest.approx((3.4976, 91.4362), abs=1e-4)
  assert 0 < meta['mos_norm'].min() and meta['mos_norm'].max() < 1


def test_real_livec_dev_half_with_lower_case_extensions(tmp_path):
  real = _livec_dev()
  os.symlink(os.path.join(real, 'Data'), tmp_path / 'Data')
  for folder in ('Images', os.path.join('Images', 'trainingImages')):
    os.makedirs(tmp_path / folder)
    for name in os.listdir(os.path.join(real, folder)):
      if os.path.isfile(os.path.join(real, folder, name)):
        stem, ext = os.path.splitext(name)
        os.symlink(os.path.join(real, folder, name), tmp_path / folder / (stem + ext.lower()))
  src = LIVEChallenge(tmp_path)
  assert len(src) == 581
  renamed = [i for i, n in enumerate(src.metadata()['name']) if n.endswith('.JPG')]
  assert renamed and src.path(renamed[0]).endswith('.jpg')
  assert src[renamed[0]]['image'].shape == (256, 256, 3)
  assert len(LIVEChallenge(tmp_path, drop_training_images=False)) == 588

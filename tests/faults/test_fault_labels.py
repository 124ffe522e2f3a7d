"""Broken label tables: every reader fails at construction with the table and line named.

Faults: a NaN MOS, a missing MOS, one image listed twice, a table without its MOS column, and a
name that matches no file. Readers: generic CSV, KADID-10k dmos.csv, KonIQ-10k CSV, TID2013
mos_with_names.txt.
"""

import csv
import dataclasses
import os
import re
from typing import Callable

import pytest

import data_layouts
from metaiqa_jax.data import CSVDataset, KADID10k, KonIQ10k, TID2013


@dataclasses.dataclass(frozen=True)
class Layout:
  make: Callable        # writes the native layout into a folder.
  table: str            # the label table, relative to that folder.
  read: Callable        # folder -> source.
  name_col: int
  mos_col: int
  missing_name: str     # a well-formed name with no file.
  header: bool = True
  sep: str = ','


LAYOUTS = {
    'csv': Layout(data_layouts.make_csv, 'labels.csv',
                  lambda root: CSVDataset(os.path.join(root, 'labels.csv'), root), 0, 1,
                  'photos/nothere.png'),
    'kadid': Layout(data_layouts.make_kadid, 'kadid10k/dmos.csv', KADID10k, 0, 2,
                    'I09_01_01.png'),
    'koniq': Layout(data_layouts.make_koniq, 'koniq10k_scores_and_distributions.csv', KonIQ10k,
                    0, 7, '999.jpg'),
    'tid': Layout(data_layouts.make_tid, 'mos_with_names.txt', TID2013, 1, 0, 'i09_01_1.bmp',
                  header=False, sep=' '),
}


def _read_rows(path, layout):
  with open(path, newline='') as f:
    if layout.sep == ',':
      return list(csv.reader(f))
    return [line.split() for line in f if line.strip()]


def _write_rows(path, layout, rows):
  with open(path, 'w', newline='') as f:
    if layout.sep == ',':
      csv.writer(f).writerows(rows)
    else:
      f.write(''.join(' '.join(r) + '\n' for r in rows))


def _line(layout, record):
  """1-based file line of data record `record` (0-based)."""
  return record + (2 if layout.header else 1)


def _broken(tmp_path, name, fault):
  """Writes layout `name`, breaks its table with `fault`; returns (layout, root, table, line)."""
  layout, root = LAYOUTS[name], str(tmp_path / name)
  os.makedirs(root)
  layout.make(root)
  table = os.path.join(root, layout.table)
  rows = _read_rows(table, layout)
  first = 1 if layout.header else 0
  record = 2  # The data record that gets the fault.
  row = rows[first + record]
  if fault == 'nan_mos':
    row[layout.mos_col] = 'nan'
  elif fault == 'missing_mos':
    row[layout.mos_col] = ''
    if layout.sep == ' ':
      del row[layout.mos_col]
  elif fault == 'duplicate':
    row[layout.name_col] = rows[first][layout.name_col]
  elif fault == 'no_file':
    row[layout.name_col] = layout.missing_name
  elif fault == 'missing_column':
    rows = [[v for c, v in enumerate(r) if c != layout.mos_col] for r in rows]
    # Tables with a header fail on it (line 1), TID2013's positional one on a record.
    record = -1 if layout.header else 0
  _write_rows(table, layout, rows)
  return layout, root, table, _line(layout, record)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_nan_mos_names_the_line(tmp_path, name):
  layout, root, table, line = _broken(tmp_path, name, 'nan_mos')
  with pytest.raises(ValueError, match=re.escape(f'{table}:{line}: MOS') + '.* is nan'):
    layout.read(root)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_missing_mos_names_the_line(tmp_path, name):
  layout, root, table, line = _broken(tmp_path, name, 'missing_mos')
  with pytest.raises(ValueError, match=re.escape(f'{table}:{line}: ')):
    layout.read(root)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_duplicate_name_names_both_lines(tmp_path, name):
  layout, root, table, line = _broken(tmp_path, name, 'duplicate')
  first_line = _line(layout, 0)
  with pytest.raises(ValueError, match=re.escape(f'{table}:{line}: ') + '.* is listed twice '
                     + re.escape(f'(first at {table}:{first_line})')):
    layout.read(root)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_missing_column_names_the_line(tmp_path, name):
  layout, root, table, line = _broken(tmp_path, name, 'missing_column')
  with pytest.raises(ValueError, match=re.escape(f'{table}:{line}: ')):
    layout.read(root)


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_name_without_file_names_it_and_its_line(tmp_path, name):
  layout, root, table, line = _broken(tmp_path, name, 'no_file')
  with pytest.raises(FileNotFoundError) as error:
    layout.read(root)
  message = str(error.value)
  assert '1 of ' in message and 'image files are missing' in message
  assert os.path.basename(layout.missing_name) in message
  assert f'(listed at {table}:{line})' in message

"""Session fixture: one folder per dataset in its native layout (see data_layouts.py)."""

import os

import pytest

import data_layouts


@pytest.fixture(scope='session')
def native_root(tmp_path_factory):
  """One folder per dataset, each in its native layout."""
  root = tmp_path_factory.mktemp('native')
  for name in ('kadid', 'tid', 'livec', 'koniq', 'csv', 'cid'):
    os.makedirs(root / name)
  data_layouts.make_kadid(str(root / 'kadid'))
  data_layouts.make_tid(str(root / 'tid'))
  data_layouts.make_livec(str(root / 'livec'))
  data_layouts.make_koniq(str(root / 'koniq'))
  data_layouts.make_csv(str(root / 'csv'))
  data_layouts.make_csv(str(root / 'cid'), 'cid2013.csv')
  return root

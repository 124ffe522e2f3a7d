"""The demo pipeline at toy size (`configs/demo.py:smoke`): structure of what it writes.

Its numbers mean nothing at this size; the measured demo is in the README.
"""

import json
import os

import numpy as np
import pytest

from metaiqa_jax.configs import demo as demo_config
from metaiqa_jax.data import SyntheticBank
from metaiqa_jax.train import demo


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('demo')
  return workdir, demo.demo(demo_config.get_config('smoke'), str(workdir))


def test_demo_writes_rows_for_every_method_type_k_and_seed(smoke_run):
  workdir, report = smoke_run
  config = demo_config.get_config('smoke')
  rows = json.load(open(workdir / 'report.json'))['results']
  expected = {(m, t, k, s) for m in demo.METHODS for t in config.demo.held_out_types
              for k in config.lodo.shots for s in range(config.demo.seeds)}
  assert {(r['method'], r['held_out_type'], r['k'], r['seed']) for r in rows} == expected
  for row in rows:
    assert set(row) >= {'method', 'held_out_type', 'k', 'seed', 'srocc', 'plcc'}
    assert np.isnan(row['srocc']) or -1 <= row['srocc'] <= 1
  assert report['held_out_types'] == {10: 'JPEG', 11: 'AWGN'}
  assert report['machine']['cores'] == os.cpu_count() and report['machine']['cpu']
  sanity = json.load(open(workdir / 'report.json'))['sanity']
  assert [r['method'] for r in sanity] == list(demo.METHODS)
  for row in sanity:
    assert -1 <= row['srocc'] <= 1 and -1 <= row['plcc'] <= 1
    # Held-out photos under every training type, each image scored once.
    assert row['images'] == config.demo.held_out_photos * 23 * 5
  assert os.path.getsize(workdir / 'srocc_vs_k.png') > 0
  summary = open(workdir / 'summary.md').read()
  assert summary.index(demo.SANITY_TITLE) < summary.index(demo.HELD_OUT_TITLE)
  assert '| method | srocc | plcc | images |' in summary
  assert '| method | k | SROCC | PLCC | n |' in summary


def test_demo_summary_is_the_mean_over_types_then_draws(smoke_run):
  _, report = smoke_run
  rows = [r for r in report['results'] if r['method'] == 'scratch' and r['k'] == 0]
  per_draw = [np.mean([r['srocc'] for r in rows if r['seed'] == s])
              for s in sorted({r['seed'] for r in rows})]
  entry = next(e for e in report['summary'] if e['method'] == 'scratch' and e['k'] == 0)
  np.testing.assert_allclose(entry['srocc'], np.mean(per_draw))
  assert entry['n'] == len(per_draw)


def test_training_never_sees_held_out_types_or_photos(smoke_run):
  workdir, report = smoke_run
  for run in ('meta', 'multitask'):
    trained = json.load(open(workdir / run / 'report.json'))['train_types']
    assert not set(trained) & set(report['held_out_types'])
    assert len(trained) == 25 - len(report['held_out_types'])
  assert len(report['held_out_photos']) == demo_config.get_config('smoke').demo.held_out_photos


def test_training_source_drops_exactly_the_held_out_photos():
  bank = SyntheticBank(types=(10,), levels=(1, 2), max_side=48, progress=False, workers=2)
  test_photos = demo.split_photos(bank, 3, seed=0)
  kept = demo.training_source(bank, test_photos).metadata()['ref_id']
  all_photos = set(bank.metadata()['ref_id'])
  assert set(kept) == all_photos - set(test_photos) and len(test_photos) == 3
  assert len(kept) == 2 * (len(all_photos) - 3)
  assert len(all_photos) == 35  # 24 Kodak photos shipped in the package + 11 from the wheels.


def test_shot_rows_adapt_on_the_first_k_support_images_and_score_k0_once():
  from metaiqa_jax.train import evaluation
  calls = []

  def fake(steps):
    def adapt_predict(lr, variables, sx, sy, qx, key):
      calls.append((steps, len(sx), sy.tolist()))
      return qx[:, 0, 0, 0, 0] * (1 if steps == 0 else -1)
    return adapt_predict

  query_x = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1, 1) * np.ones((5, 1, 2, 2, 3))
  support = (np.zeros((4, 1, 2, 2, 3), np.float32), np.array([.1, .2, .3, .4]))
  rows = evaluation.shot_rows({0: fake(0), 2: fake(2), 3: fake(3)}, 0.01, {}, support,
                              (query_x, np.arange(5.0)), shots=(0, 4), steps=(2, 3),
                              key=None, fields={'method': 'm'})
  assert [(r['k'], r['steps']) for r in rows] == [(0, 0), (4, 2), (4, 3)]
  assert calls == [(0, 0, []), (2, 4, [.1, .2, .3, .4]), (3, 4, [.1, .2, .3, .4])]
  assert [round(r['srocc'], 6) for r in rows] == [1.0, -1.0, -1.0]
  assert all(r['method'] == 'm' for r in rows)

"""`metaiqa-adapt` end to end on tiny data: every bad input exits 2 with one message and writes
nothing; a good support set writes a model that `metaiqa-score --weights` and `load_model` read
and that scores as it was adapted."""

import csv
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax import adaptation, quality_model
from metaiqa_jax.models import backbones, create_model, init_variables
from metaiqa_jax.preprocess import InputSpec

ARCH = 'efficientnet_lite0'
SIZE = 32
COUNT = 12


def run_cli(module: str, *args, timeout=300):
  return subprocess.run([sys.executable, '-m', f'metaiqa_jax.cli.{module}', *map(str, args)],
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def support_dir(tmp_path_factory):
  """COUNT small photos (smoother = higher MOS, on a 1..5 scale) and their labels.csv."""
  root = tmp_path_factory.mktemp('support')
  rng = np.random.default_rng(0)
  rows = []
  for i in range(COUNT):
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((48, 40), Image.BICUBIC), np.float32)
    noise = rng.normal(0, 8 * i, smooth.shape)
    Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8)).save(root / f'p{i}.png')
    rows.append((f'p{i}.png', 5.0 - 4.0 * i / (COUNT - 1)))
  write_csv(root / 'labels.csv', rows)
  return root


def write_csv(path, rows, header=('image_name', 'MOS')):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


@pytest.fixture(scope='module')
def init_dir(tmp_path_factory):
  """A model directory with a random EfficientNet-Lite0 frozen whole (the shipped model's kind:
  only its head adapts, on features) seeing 2 x 2 grids of 32 px crops."""
  module = create_model(ARCH, head_features=(16, 8), head_input='stats',
                        freeze=backbones.get(ARCH).max_freeze)
  variables = init_variables(module, jax.random.key(0), SIZE)
  directory = tmp_path_factory.mktemp('init')
  quality_model.save(quality_model.QualityModel(module, variables,
                                                InputSpec(SIZE, resize_to=0, eval_grid=2)),
                     directory)
  return directory


def assert_refused(result, message, workdir):
  assert result.returncode == 2, result.stdout + result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('metaiqa-adapt: error')]
  assert len(errors) == 1 and message in errors[0], result.stderr
  assert not os.path.exists(workdir)


@pytest.mark.parametrize('case', ['one row', 'nan', 'text', 'outside range', 'missing',
                                  'unreadable', 'duplicate'])
def test_bad_support_is_refused_and_nothing_is_written(support_dir, tmp_path, case):
  rows = [(f'p{i}.png', 3.0) for i in range(4)]
  messages = {'one row': 'lists 1 image; adaptation needs at least 2',
              'nan': 'MOS of', 'text': "labels.csv:4: MOS 'good' is missing or not a number", 'outside range': 'outside',
              'missing': 'missing.png', 'unreadable': 'broken.png', 'duplicate': 'listed twice'}
  if case == 'one row':
    rows = rows[:1]
  elif case == 'nan':
    rows[1] = ('p1.png', 'nan')
  elif case == 'text':
    rows[2] = ('p2.png', 'good')
  elif case == 'outside range':
    rows[3] = ('p3.png', 9.0)
  elif case == 'missing':
    rows.append(('missing.png', 2.0))
  elif case == 'unreadable':
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    rows.append((str(tmp_path / 'broken.png'), 2.0))
  elif case == 'duplicate':
    rows.append(('p0.png', 2.0))
  labels = tmp_path / 'labels.csv'
  write_csv(labels, rows)
  workdir = tmp_path / 'out'
  result = run_cli('adapt', '--support', labels, '--images', support_dir, '--mos_range', '1,5',
                   '--workdir', workdir)
  assert_refused(result, messages[case], workdir)


def test_bad_mos_range_and_bad_init_are_refused(support_dir, tmp_path):
  workdir = tmp_path / 'out'
  result = run_cli('adapt', '--support', support_dir / 'labels.csv', '--mos_range', '5,1',
                   '--workdir', workdir)
  assert_refused(result, '--mos_range must have finite LO < HI', workdir)
  result = run_cli('adapt', '--support', support_dir / 'labels.csv', '--init', tmp_path / 'nope',
                   '--workdir', workdir)
  assert_refused(result, 'is neither a model directory', workdir)


def test_adapts_writes_a_model_that_metaiqa_score_reads(support_dir, init_dir, tmp_path):
  workdir = tmp_path / 'adapted'
  result = run_cli('adapt', '--support', support_dir / 'labels.csv', '--init', init_dir,
                   '--workdir', workdir, '--steps', 30)
  assert result.returncode == 0, result.stderr
  assert "WARNING: no --mos_range: using the support's own range 1..5" in result.stderr
  before, after = map(float, re.search(r'support loss \(MSE, 0\.\.1 scale\): before ([\d.]+), '
                                       r'after ([\d.]+)', result.stdout).groups())
  assert after < before
  assert 'leave-some-out SROCC (5 folds): unadapted' in result.stdout

  adapted = quality_model.load_model(workdir)
  initial = quality_model.load(init_dir)
  same = jax.tree.map(np.array_equal, jax.device_get(initial.variables['params']['backbone']),
                      jax.device_get(adapted.variables['params']['backbone']))
  assert all(jax.tree.leaves(same)), 'the frozen backbone moved'
  assert adapted.info['card']['adaptation']['steps'] == 30
  assert adapted.info['card']['mos_range'] == [1.0, 5.0]

  # The same adaptation in process (the CSV's order): the written model is adapt_head's.
  paths = [str(support_dir / f'p{i}.png') for i in range(COUNT)]
  mos = 1 - np.arange(COUNT) / (COUNT - 1)
  features = adaptation.support_features(initial.module, initial.variables, paths, initial.inputs)
  expected = adaptation.head_scores(
      initial.module, adaptation.adapt_head(initial.module, initial.variables, features, mos,
                                            steps=30), features)
  np.testing.assert_allclose(adapted.score(paths), expected, atol=1e-5)

  scored = run_cli('score', '--weights', workdir, '--output', tmp_path / 'scores.csv', *paths)
  assert scored.returncode == 0, scored.stderr
  with open(tmp_path / 'scores.csv', newline='') as f:
    written = {row['path']: float(row['score']) for row in csv.DictReader(f)}
  np.testing.assert_allclose([written[p] for p in paths], expected, atol=2e-6)

  again = run_cli('adapt', '--support', support_dir / 'labels.csv', '--init', init_dir,
                  '--workdir', workdir, '--steps', 1)
  assert again.returncode == 2 and 'already holds a model' in again.stderr
  assert quality_model.load(workdir).info['card']['adaptation']['steps'] == 30, 'overwritten'
  overwrite = run_cli('adapt', '--support', support_dir / 'labels.csv', '--init', init_dir,
                      '--workdir', workdir, '--steps', 1, '--overwrite')
  assert overwrite.returncode == 0, overwrite.stderr
  assert quality_model.load(workdir).info['card']['adaptation']['steps'] == 1

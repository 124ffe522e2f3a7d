"""`metaiqa-adapt` end to end on tiny data: every bad input exits 2 with one message and writes
nothing; a good support set writes a model that `metaiqa-score --weights` and `load_model` read
and that scores as it was adapted."""

import csv
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
import forked_cli

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


BAD_SUPPORT = {  # case -> (rows changed from 4 valid ones, what the one error line says)
    'one row': ('first only', 'lists 1 image; adaptation needs at least 2'),
    'nan': ((1, 'p1.png', 'nan'), 'labels.csv:3: MOS of'),
    'text': ((2, 'p2.png', 'good'), "labels.csv:4: MOS 'good' is missing or not a number"),
    'outside range': ((3, 'p3.png', 9.0), 'labels.csv:5: MOS 9 is outside 1..5'),
    'missing': ((4, 'missing.png', 2.0), 'missing.png (listed at'),
    'unreadable': ((4, 'broken.png', 2.0), '1 of 5 image files cannot be decoded'),
    'duplicate': ((4, 'p0.png', 2.0), 'p0.png is listed twice'),
}


def test_every_bad_input_exits_2_with_one_message_and_writes_nothing(support_dir, tmp_path):
  runs, expected = [], []
  (support_dir / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
  for n, (case, (change, message)) in enumerate(BAD_SUPPORT.items()):
    rows = [(f'p{i}.png', 3.0) for i in range(4)]
    if change == 'first only':
      rows = rows[:1]
    else:
      index, name, mos = change
      rows[index:index + 1] = [(name, mos)]
    labels = tmp_path / f'labels_{n}' / 'labels.csv'
    labels.parent.mkdir()
    write_csv(labels, rows)
    runs.append(['--support', str(labels), '--images', str(support_dir), '--mos_range', '1,5',
                 '--workdir', str(tmp_path / f'out_{n}')])
    expected.append((case, message))
  labels = str(support_dir / 'labels.csv')
  for args, message in (
      (['--mos_range', '5,1'], '--mos_range must have finite LO < HI'),
      (['--mos_range', 'one,two'], '--mos_range must be LO,HI (two numbers)'),
      (['--init', str(tmp_path / 'nope')], 'is neither a model directory'),
      ([], None)):  # No --workdir.
    n = len(runs)
    runs.append(['--support', labels, *args] + (['--workdir', str(tmp_path / f'out_{n}')]
                                                if message else []))
    expected.append((' '.join(args) or 'no workdir', message or '--support and --workdir are '
                     'required'))
  (tmp_path / 'forked').mkdir()
  results = forked_cli.run_forked(
      [('metaiqa_jax.cli.adapt', 'run', ['metaiqa-adapt', *args]) for args in runs],
      tmp_path / 'forked', fd=2)
  for n, ((case, message), (status, stderr)) in enumerate(zip(expected, results)):
    errors = [line for line in stderr.splitlines() if line.startswith('metaiqa-adapt: error')]
    assert status == 2, (case, stderr)
    assert len(errors) == 1 and message in errors[0], (case, stderr)
    assert not (tmp_path / f'out_{n}').exists(), case


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

"""metaiqa-transfer end to end at toy size on a LIVE Challenge layout written by the test.

The root holds 40 images (blurred noise textures, MOS falling with the blur) in the native
layout: Images/ (+ trainingImages/ for the 7 challenge training images), Data/*.mat.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy import ndimage

from metaiqa_jax import checkpoints
from metaiqa_jax.configs import transfer_livec as transfer_config
from metaiqa_jax.data import make_source
from metaiqa_jax.train import transfer

N_IMAGES = 40
LAUNCH = pathlib.Path(__file__).resolve().parent.parent / 'launch'


def write_livec_root(root, n=N_IMAGES, side=48):
  """A LIVE Challenge layout whose MOS is a decreasing function of each image's blur."""
  rng = np.random.default_rng(0)
  names = [f't{i}.bmp' for i in range(1, 8)] + [
      f'{100 + i}.JPG' if i % 2 else f'{100 + i}.bmp' for i in range(n)]
  blur = np.concatenate([np.zeros(7), rng.uniform(0, 3, n)])
  for i, (name, sigma) in enumerate(zip(names, blur)):
    texture = ndimage.zoom(rng.random((side // 4, side // 4, 3)), (4, 4, 1), order=1)
    image = (ndimage.gaussian_filter(texture, (sigma, sigma, 0)) * 255).astype(np.uint8)
    folder = os.path.join(root, 'Images', *(['trainingImages'] if i < 7 else []))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image).save(os.path.join(folder, name),
                                format='JPEG' if name.endswith('JPG') else 'BMP', quality=95)
  os.makedirs(os.path.join(root, 'Data'), exist_ok=True)
  cell = np.empty((len(names), 1), dtype=object)
  cell[:, 0] = names
  scipy.io.savemat(os.path.join(root, 'Data', 'AllImages_release.mat'),
                   {'AllImages_release': cell})
  scipy.io.savemat(os.path.join(root, 'Data', 'AllMOS_release.mat'),
                   {'AllMOS_release': (90 - 20 * blur)[None, :]})
  return str(root)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  root = write_livec_root(tmp_path_factory.mktemp('livec'))
  workdir = tmp_path_factory.mktemp('transfer')
  config = transfer_config.get_config('smoke')
  config.finetune.root = root
  return root, workdir, config, transfer.transfer(config, str(workdir))


def test_report_has_a_row_per_init_and_split_and_a_summary(run):
  _, workdir, config, report = run
  n_splits = config.finetune.n_splits
  rows = json.load(open(workdir / 'report.json'))['results']
  names = list(config.transfer.inits) + list(transfer.BASELINES)
  assert 'imagenet+meta' in names and 'probe' in names
  assert {(r['init'], r['split']) for r in rows} == {
      (i, k) for i in names for k in range(n_splits)}
  assert all(-1 <= r['srocc'] <= 1 and -1 <= r['plcc'] <= 1 for r in rows)
  summary = {r['init']: r for r in report['summary']}
  assert list(summary) == names
  for init, entry in summary.items():
    values = [r['srocc'] for r in rows if r['init'] == init]
    assert entry['srocc'] == pytest.approx(np.mean(values)) and entry['n'] == n_splits
    assert set(entry) >= {'srocc', 'srocc_ci95', 'plcc', 'plcc_ci95', 'n'}
  assert '| init | SROCC | PLCC | n |' in open(workdir / 'summary.md').read()
  assert os.path.getsize(workdir / 'srocc_by_init.png') > 0


def test_splits_are_shared_and_selection_never_sees_test(run):
  root, workdir, config, report = run
  splits = json.load(open(workdir / 'splits.json'))['splits']
  assert len(splits) == config.finetune.n_splits
  for split in splits:
    parts = [set(split[p]) for p in ('train', 'val', 'test')]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(parts[2]) == round(N_IMAGES * config.finetune.test_fraction)
  for init in config.transfer.inits:
    for k in range(config.finetune.n_splits):
      split_dir = workdir / 'finetune' / init / f'split_{k}'
      assert {e['split'] for e in _metrics(split_dir)} == {'train', 'val'}
      split_report = json.load(open(split_dir / 'report.json'))
      assert split_report['split'] == k and split_report['test']['n'] == len(splits[k]['test'])
  assert report['pretrained'].keys() == {'meta', 'multitask'}


def test_sharpness_rows_match_a_direct_computation(run):
  root, workdir, _, report = run
  source = make_source('livec', root)
  split = json.load(open(workdir / 'splits.json'))['splits'][0]
  expected = transfer.sharpness_rows(source, [{'test': np.asarray(split['test'])}])[0]
  row = next(r for r in report['results'] if r['init'] == 'sharpness' and r['split'] == 0)
  assert row['srocc'] == pytest.approx(expected['srocc'])


def test_final_checkpoints_evaluate_with_no_other_settings(run, tmp_path):
  root, workdir, config, _ = run
  final = workdir / 'final' / 'imagenet+meta'
  assert checkpoints.stored_inputs(final) is not None
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, str(LAUNCH / 'evaluate.py'), f'--config.model.init={final}',
       '--config.finetune.source=livec', f'--config.finetune.root={root}',
       f'--workdir={tmp_path / "eval"}'], capture_output=True, text=True, env=env, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  evaluated = json.load(open(tmp_path / 'eval' / 'report.json'))
  assert evaluated['model']['width'] == config.model.width
  assert evaluated['inputs'] == checkpoints.stored_inputs(final).to_dict()
  assert evaluated['results']['all']['n'] == N_IMAGES


def _metrics(run_dir):
  with open(run_dir / 'metrics.jsonl') as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize('init, inits', [('imagenet', ('imagenet', 'meta')),
                                         ('', ('imagenet+multitask',)),
                                         ('imagenet', ('fancy',)), ('imagenet', ())])
def test_rows_that_contradict_the_pretraining_start_are_refused(init, inits):
  from metaiqa_jax import configlib
  config = transfer_config.get_config('smoke')
  config.model.init, config.transfer.inits = init, inits
  with pytest.raises(configlib.ConfigError, match='transfer.inits'):
    transfer.check_inits(config)

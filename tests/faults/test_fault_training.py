"""Training faults in-process: a NaN loss, a corrupted latest checkpoint, broken training images,
hostile or mismatched initial weights, and an unwritable workdir.

One 4-step tiny meta-training run (checkpoints at steps 2 and 4) is shared; each test works on a
copy of its workdir.
"""

import logging
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax import checkpoints
from metaiqa_jax.data import CSVDataset
from metaiqa_jax.data.base import UnreadableImagesError
from metaiqa_jax.images import ImageReadError
from metaiqa_jax.train import finetune, loop, meta_train, reporting
import test_programs


class NaNLabels:
  """`source` with every label NaN (a broken label column that slipped past the readers)."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def metadata(self):
    meta = dict(self.source.metadata())
    meta['mos_norm'] = np.full(len(self), np.nan)
    return meta

  def __getitem__(self, index):
    return self.source[index]


def four_step_config():
  config = test_programs.tiny_config()
  config.num_steps = 4
  return config


@pytest.fixture(scope='module')
def source():
  return test_programs.tiny_source()


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, source):
  """A 4-step run's workdir (checkpoints at steps 2 and 4) and its report."""
  workdir = str(tmp_path_factory.mktemp('four_steps'))
  return workdir, meta_train.meta_train(four_step_config(), workdir, source=source)


def _copy(workdir, tmp_path):
  target = str(tmp_path / 'run')
  shutil.copytree(workdir, target)
  return target


def _committed_steps(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())


def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(finished_run, source,
                                                                       tmp_path):
  workdir = _copy(finished_run[0], tmp_path)
  _, before = checkpoints.restore_variables(os.path.join(workdir, 'checkpoints', '4'))
  config = four_step_config()
  config.num_steps = 6
  with pytest.raises(loop.NonFiniteLossError,
                     match=r'meta-step 5: query loss is nan; stopping\. The last good checkpoint '
                           r'is step 4 in '):
    meta_train.meta_train(config, workdir, source=NaNLabels(source))
  assert _committed_steps(workdir) == [2, 4]
  _, after = checkpoints.restore_variables(os.path.join(workdir, 'checkpoints', '4'))
  jax.tree.map(np.testing.assert_array_equal, before, after)


class NaNRecordLabels(NaNLabels):
  """`source` whose records (what fine-tuning batches read) carry NaN labels."""

  def metadata(self):
    return self.source.metadata()

  def __getitem__(self, index):
    return self.source[index] | {'mos_norm': np.float32(np.nan)}


def test_finetuning_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(source,
                                                                                  tmp_path):
  config = test_programs.tiny_config()
  config.data.verify_images = False
  config.finetune.splits = (0,)
  config.finetune.epochs = 1
  finetune.finetune(config, str(tmp_path), source=source)
  split_dir = os.path.join(tmp_path, 'split_0')
  [epoch_end] = _committed_steps(split_dir)
  _, before = checkpoints.restore_variables(os.path.join(split_dir, 'checkpoints', str(epoch_end)))
  config.finetune.epochs = 2
  with pytest.raises(loop.NonFiniteLossError,
                     match=rf'fine-tuning split 0, step {epoch_end + 1}: loss is nan; stopping\. '
                           rf'The last good checkpoint is step {epoch_end} in '):
    finetune.finetune(config, str(tmp_path), source=NaNRecordLabels(source))
  assert _committed_steps(split_dir) == [epoch_end]
  _, after = checkpoints.restore_variables(os.path.join(split_dir, 'checkpoints', str(epoch_end)))
  jax.tree.map(np.testing.assert_array_equal, before, after)


def _truncate_largest_file(directory):
  files = [os.path.join(root, f) for root, _, names in os.walk(directory) for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, 'r+b') as f:
    f.truncate(os.path.getsize(largest) // 2)
  return largest


def test_corrupted_latest_checkpoint_falls_back_with_a_warning(finished_run, source, tmp_path,
                                                               caplog):
  workdir = _copy(finished_run[0], tmp_path)
  _truncate_largest_file(os.path.join(workdir, 'checkpoints', '4', 'state'))
  with caplog.at_level(logging.WARNING):
    report = meta_train.meta_train(four_step_config(), workdir, source=source)
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  step4 = os.path.join(workdir, 'checkpoints', '4')
  assert any(f'checkpoint {step4} is unreadable' in w and 'falling back' in w for w in warnings)
  assert os.listdir(os.path.join(workdir, 'corrupt_checkpoints'))
  assert _committed_steps(workdir) == [2, 4]  # Steps 3-4 trained again from step 2.
  test_programs.assert_same_metrics(report['final_val'], finished_run[1]['final_val'])
  assert [e['step'] for e in reporting.read_metrics(workdir, 'train')] == [1, 2, 3, 4]


def _csv_source(root, broken):
  """A 6-image generic CSV source; `broken` images are replaced by a truncated JPEG."""
  os.makedirs(root)
  rows = ['name,mos']
  for i in range(6):
    name = f'img{i}.jpg'
    rng = np.random.default_rng(i)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
        os.path.join(root, name), quality=90)
    if i in broken:
      with open(os.path.join(root, name), 'r+b') as f:
        f.truncate(300)
    rows.append(f'{name},{i + 1}')
  with open(os.path.join(root, 'labels.csv'), 'w') as f:
    f.write('\n'.join(rows) + '\n')
  return CSVDataset(os.path.join(root, 'labels.csv'), root)


def test_verify_names_every_undecodable_training_image(tmp_path):
  good = _csv_source(str(tmp_path / 'good'), broken=())
  good.verify()
  source = _csv_source(str(tmp_path / 'bad'), broken=(1, 4))
  with pytest.raises(UnreadableImagesError) as error:
    source.verify()
  assert isinstance(error.value, ImageReadError)
  assert error.value.paths == [source.path(1), source.path(4)]
  assert '2 of 6 image files cannot be decoded' in str(error.value)


def test_meta_train_refuses_corrupt_training_images_before_compiling(tmp_path):
  config = four_step_config()
  config.data.sources = ('csv',)
  source = _csv_source(str(tmp_path / 'data'), broken=(3,))
  workdir = tmp_path / 'run'
  with pytest.raises(UnreadableImagesError, match='img3.jpg'):
    meta_train.meta_train(config, str(workdir), source=source)
  assert not (workdir / 'checkpoints').exists()


def test_init_from_a_checkpoint_of_another_width_names_the_first_key(finished_run, source,
                                                                     tmp_path):
  config = four_step_config()
  config.model.width = 0.125
  config.model.init = finished_run[0]
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match=r'does not fit model ModelConfig\(.*width=0\.125.*\): '
                           r'batch_stats/backbone/bn1/mean: checkpoint has shape \(4,\), '
                           r'expected \(8,\)'):
    meta_train.meta_train(config, str(tmp_path / 'run'), source=source)


@pytest.mark.parametrize('workdir', ['{regular_file}/run', '/proc/metaiqa-run'])
def test_unwritable_workdir_fails_at_start(tmp_path, workdir):
  regular_file = tmp_path / 'a_file'
  regular_file.write_text('')
  workdir = workdir.format(regular_file=regular_file)
  with pytest.raises(checkpoints.WorkdirError, match=f"workdir '{workdir}' is not a writable"):
    meta_train.meta_train(four_step_config(), workdir, source=object())

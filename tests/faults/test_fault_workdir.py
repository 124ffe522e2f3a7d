"""Workdir ownership and storage faults, through the `metaiqa-meta-train` entry point.

Every run is a subprocess calling `cli.programs.meta_train()` (what the console script runs) on
the tiny test config and source. A gated run blocks before compiling, holding its workdir, until
the gate file exists, so a second run meets it deterministically. Storage faults are injected in
the subprocess: ENOSPC in orbax's save thread for checkpoint step 4
(`test_checkpoints.failing_json_save`), or in metrics.jsonl from step 5 on
(`test_reporting.full_disk_from`), or real: the workdir on a tmpfs with room for one checkpoint
(skipped where mounting is not permitted). The rerun after a fault must equal an uninterrupted
run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from metaiqa_jax import checkpoints, workdir_lock
from metaiqa_jax.cli import programs
from metaiqa_jax.train import meta_train, reporting
import test_programs

NUM_STEPS = 6
TESTS = os.path.dirname(os.path.abspath(test_programs.__file__))
_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from test_programs import tiny_config as get_config
"""
_WORKER = """
import os, sys, time
sys.path.insert(0, {tests!r})
import orbax.checkpoint as ocp
import test_checkpoints, test_programs, test_reporting
from metaiqa_jax.cli import programs
from metaiqa_jax.train import reporting, setup

class Gated:
  def __init__(self, source, gate):
    self.source, self.gate = source, gate
  def __len__(self):
    return len(self.source)
  def metadata(self):
    if self.gate:
      open(self.gate + '.waiting', 'w').close()
    while self.gate and not os.path.exists(self.gate):
      time.sleep(0.05)
    return self.source.metadata()
  def __getitem__(self, i):
    return self.source[i]

setup.meta_source = lambda data_config: Gated(test_programs.tiny_source(), {gate!r})
{fault}
sys.argv = ['metaiqa-meta-train', '--config={config}', '--workdir={workdir}',
            '--config.num_steps={num_steps}']
programs.meta_train()
"""
FAULTS = {
    'checkpoint': 'ocp.JsonCheckpointHandler._save_fn = test_checkpoints.failing_json_save(4)',
    'log': 'reporting.open = test_reporting.full_disk_from(5)'}


def _start(tmp_path, workdir, *, gate='', fault=''):
  config = tmp_path / 'tiny_config.py'
  config.write_text(_CONFIG.format(tests=TESTS))
  code = _WORKER.format(tests=TESTS, gate=gate, fault=fault, config=config, workdir=workdir,
                        num_steps=NUM_STEPS)
  return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _finish(proc):
  _, err = proc.communicate(timeout=600)
  return proc.returncode, err


def _wait_for(path, proc):
  deadline = time.time() + 300
  while not os.path.exists(path):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, f'{path} did not appear'
    time.sleep(0.05)


def _messages(err):
  """stderr without the progress bar and absl's INFO and WARNING lines."""
  return [line for line in err.splitlines()
          if line and 'meta-step' not in line and not re.match(r'[IW]\d{4} ', line)]


def _lock(workdir):
  return os.path.join(workdir, workdir_lock.LOCK_FILENAME)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run's workdir."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  config = test_programs.tiny_config()
  config.num_steps = NUM_STEPS
  meta_train.meta_train(config, workdir, source=test_programs.tiny_source())
  return workdir


def _assert_same_run(a, b):
  report = lambda d: json.load(open(os.path.join(d, 'report.json')))
  test_programs.assert_same_metrics(report(a)['final_val'], report(b)['final_val'])
  assert report(a)['best_step'] == report(b)['best_step']
  losses = lambda d: [(e['step'], e['metrics']['loss']) for e in reporting.read_metrics(d, 'train')]
  assert losses(a) == losses(b)
  final = lambda d: checkpoints.restore_variables(os.path.join(d, 'checkpoints', str(NUM_STEPS)))
  jax.tree.map(np.testing.assert_array_equal, final(a)[1], final(b)[1])


def test_second_run_on_a_busy_workdir_exits_2_naming_the_holder(tmp_path, reference):
  workdir, gate = str(tmp_path / 'run'), str(tmp_path / 'gate')
  first = _start(tmp_path, workdir, gate=gate)
  _wait_for(_lock(workdir), first)
  started = time.time()
  returncode, err = _finish(_start(tmp_path, workdir))
  print(f'second run refused after {time.time() - started:.1f} s')
  assert returncode == 2, err[-3000:]
  assert len(_messages(err)) == 1, err[-3000:]
  assert _messages(err)[0].startswith(
      f'metaiqa-meta-train: error: workdir {os.path.realpath(workdir)} is in use by another run '
      f'(PID {first.pid} on ')
  open(gate, 'w').close()
  returncode, err = _finish(first)
  assert returncode == 0, err[-3000:]
  assert not os.path.exists(_lock(workdir))
  _assert_same_run(reference, workdir)  # Every step logged once, nothing of the second run.


def test_sigterm_before_training_releases_the_workdir(tmp_path):
  workdir, gate = str(tmp_path / 'run'), str(tmp_path / 'gate')
  proc = _start(tmp_path, workdir, gate=gate)
  _wait_for(gate + '.waiting', proc)
  proc.send_signal(signal.SIGTERM)
  returncode, err = _finish(proc)
  assert returncode == programs.PREEMPTED_EXIT_STATUS, err[-3000:]
  assert _messages(err) == ['metaiqa-meta-train: SIGTERM received: stopped; run the same command '
                            'again to resume from the last complete checkpoint']
  assert not os.path.exists(_lock(workdir))


@pytest.mark.parametrize('fault, what, last', [
    ('checkpoint', 'checkpoint step 4 in {workdir}/checkpoints', 2),
    ('log', 'the log of step 5 to {workdir}/metrics.jsonl', 4)])
def test_full_disk_is_one_message_and_the_rerun_completes_the_same(tmp_path, reference, fault,
                                                                    what, last):
  workdir = str(tmp_path / 'run')
  returncode, err = _finish(_start(tmp_path, workdir, fault=FAULTS[fault]))
  assert returncode == programs.STORAGE_ERROR_EXIT_STATUS == 74, err[-3000:]
  assert _messages(err) == [
      f'metaiqa-meta-train: error: could not write {what.format(workdir=workdir)}: No space left '
      f'on device. Make room or fix the file system; the last complete checkpoint is step '
      f'{last}: running the same command again resumes from it']
  assert not os.path.exists(_lock(workdir))
  assert checkpoints.last_complete_step(workdir) == last
  checkpoints.restore_variables(os.path.join(workdir, 'checkpoints', str(last)))  # Intact.

  returncode, err = _finish(_start(tmp_path, workdir))
  assert returncode == 0, err[-3000:]
  assert not any('tmp' in name for name in os.listdir(os.path.join(workdir, 'checkpoints')))
  _assert_same_run(reference, workdir)


def _disk_size(directory):
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(directory) for name in names)


@pytest.fixture
def small_disk(tmp_path, reference):
  """A tmpfs with room for one checkpoint of the tiny run but not two, and that size."""
  size = max(_disk_size(os.path.join(reference, 'checkpoints', step))
             for step in os.listdir(os.path.join(reference, 'checkpoints')))
  mount_point = tmp_path / 'disk'
  mount_point.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size * 3 // 2048}k', 'tmpfs',
                            str(mount_point)], capture_output=True, text=True, check=False)
  if mounted.returncode:
    pytest.skip(f'cannot mount a tmpfs: {mounted.stderr.strip()}')
  try:
    yield mount_point, size
  finally:
    subprocess.run(['umount', str(mount_point)], check=True)


def test_real_full_disk_warns_stops_with_one_message_and_resumes(tmp_path, reference, small_disk):
  mount_point, size = small_disk
  workdir = str(mount_point / 'run')
  returncode, err = _finish(_start(tmp_path, workdir))
  assert returncode == programs.STORAGE_ERROR_EXIT_STATUS, err[-3000:]
  assert 'saving step 4 will probably fail; make room now' in err  # The early warning.
  [message] = _messages(err)
  print(message)
  assert re.fullmatch(r'metaiqa-meta-train: error: could not write .+: .+\. Make room or '
                      r'fix the file system; the last complete checkpoint is step 2: running '
                      r'the same command again resumes from it', message), message
  subprocess.run(['mount', '-o', f'remount,size={size * 8 // 1024}k', str(mount_point)],
                 check=True)
  returncode, err = _finish(_start(tmp_path, workdir))
  assert returncode == 0, err[-3000:]
  _assert_same_run(reference, workdir)

"""Multi-process JAX (jax.distributed) end to end on this machine, through `launch/local_cluster.sh`.

Meta-training as 2 processes x 1 CPU device must equal 1 process x 2 CPU devices
(`--xla_force_host_platform_device_count=2`): the same mesh of 2 devices, the same tasks on each
device (every process draws the whole meta-batch from (seed, step) and keeps its own slice), the
same `pmean` of two per-device means. Only where the mean is reduced differs (gloo between
processes vs within one), and (a + b) / 2 of two float32 numbers does not depend on that, so
losses, validation metrics and final weights are compared exactly.

To keep the suite short, one 2-process run covers both that and resuming: it is stopped by
SIGTERM (sent to both processes, as a scheduler does) after its first logged step, relaunched,
and must then end exactly as the uninterrupted 1-process run; so must a copy of it resumed by
1 process (a checkpoint holds replicated state, whatever the process count that wrote it).

Fine-tuning is data parallel: each batch of images is split over the 2 devices, each process
loading its half, and BatchNorm statistics and gradients are reduced over both. The reductions
combine the same two per-device partial results in either setting, so losses, predictions and
weights are again compared exactly.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from metaiqa_jax import checkpoints
from metaiqa_jax.data import make_source, splits
from metaiqa_jax.train import reporting
import test_programs
import test_transfer

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch'
_CONFIG_FILE = """
import sys
sys.path.insert(0, {tests!r})
import test_programs
import test_transfer

def get_config():
  config = test_programs.tiny_config()
  config.meta.algorithm = 'fomaml'  # Compiles faster than second order; the same mesh and pmean.
  config.finetune.source = 'livec'
  config.finetune.root = {livec_root!r}
  config.finetune.splits = (0,)
  config.finetune.epochs = 2
  return config
"""


def _config_file(directory, livec_root='') -> str:
  path = directory / 'tiny_config.py'
  path.write_text(_CONFIG_FILE.format(tests=os.path.dirname(test_programs.__file__),
                                      livec_root=str(livec_root)))
  return str(path)


def _env(devices: int) -> dict:
  return dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS='cpu',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(1-process workdir, 2-process workdir, stderr of the interrupted 2-process launch,
  workdir of the interrupted 2-process run resumed by 1 process).

  The 1-process run goes uninterrupted, beside the first 2-process launch, which gets SIGTERM
  once process 0 has logged step 1; the second 2-process launch resumes and finishes; a copy of
  the interrupted workdir is resumed and finished by 1 process with 2 devices.
  """
  base = tmp_path_factory.mktemp('multiprocess')
  config = _config_file(base)
  one, two, two_to_one = base / 'one', base / 'two', base / 'two_to_one'
  single = subprocess.Popen(
      [sys.executable, str(LAUNCH / 'meta_train.py'), f'--config={config}', f'--workdir={one}'],
      env=_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  command = ['bash', str(LAUNCH / 'local_cluster.sh'), '2', str(LAUNCH / 'meta_train.py'),
             f'--config={config}', f'--workdir={two}']
  started = time.time()
  cluster = subprocess.Popen(command, env=_env(1), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  while not _logged_a_step(two) and cluster.poll() is None:
    assert time.time() < started + 600
    time.sleep(0.02)
  cluster.send_signal(signal.SIGTERM)  # The launcher passes it on to both processes.
  _, interrupted = cluster.communicate(timeout=600)
  assert cluster.returncode == 128 + signal.SIGTERM, interrupted[-3000:]
  shutil.copytree(two, two_to_one)  # The same checkpoint, resumed by 1 process below.
  resumed = subprocess.run(command, env=_env(1), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=600)
  print(f'2 processes, stopped and resumed: {time.time() - started:.0f} s (the first launch '
        'alongside the 1-process run)')
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  _, single_err = single.communicate(timeout=600)
  assert single.returncode == 0, single_err[-3000:]
  one_resumes = subprocess.run(
      [sys.executable, str(LAUNCH / 'meta_train.py'), f'--config={config}',
       f'--workdir={two_to_one}'], env=_env(2), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True, timeout=600)
  assert one_resumes.returncode == 0, one_resumes.stderr[-3000:]
  return one, two, interrupted, two_to_one


def _logged_a_step(workdir) -> bool:
  """Whether process 0 has logged the loss of step 1 (each line is flushed at once)."""
  path = workdir / reporting.METRICS_FILENAME
  return path.exists() and '"train"' in path.read_text()


def _losses(workdir):
  return [(e['step'], e['metrics']['loss']) for e in reporting.read_metrics(workdir, 'train')]


def test_sigterm_stops_both_processes_after_the_same_step(runs):
  _, _, interrupted, _ = runs
  saved = [int(s) for s in re.findall(r'stopped after meta-step (\d+), saved as', interrupted)]
  assert len(saved) == 2 and saved[0] == saved[1] < 4, interrupted[-3000:]


def test_two_processes_stopped_and_resumed_equal_one_process_with_two_devices(runs):
  one, two, _, two_to_one = runs
  for resumed in (two, two_to_one):  # Resumed by 2 processes, and by 1.
    assert _losses(one) == _losses(resumed) and len(_losses(one)) == 4
    report_one = json.loads((one / 'report.json').read_text())
    report_resumed = json.loads((resumed / 'report.json').read_text())
    test_programs.assert_same_metrics(report_one['final_val'], report_resumed['final_val'])
    (_, a), (_, b) = (checkpoints.restore_variables(str(w / 'checkpoints' / '4'))
                      for w in (one, resumed))
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_only_process_0_writes_logs_and_reports(runs):
  _, two, _, _ = runs
  lines = (two / 'metrics.jsonl').read_text().splitlines()
  assert len(lines) == len(set(lines))  # One writer: no line twice.
  assert not (two / 'run.lock').exists()


@pytest.fixture(scope='module')
def finetune_runs(tmp_path_factory):
  """(1-process workdir, 2-process workdir) of fine-tuning split 0 of a tiny LIVE Challenge
  layout; the two runs go side by side."""
  base = tmp_path_factory.mktemp('multiprocess_finetune')
  config = _config_file(base, test_transfer.write_livec_root(base / 'livec'))
  one, two = base / 'one', base / 'two'
  flags = [f'--config={config}']
  started = time.time()
  single = subprocess.Popen(
      [sys.executable, str(LAUNCH / 'finetune.py'), *flags, f'--workdir={one}'], env=_env(2),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  cluster = subprocess.run(
      ['bash', str(LAUNCH / 'local_cluster.sh'), '2', str(LAUNCH / 'finetune.py'), *flags,
       f'--workdir={two}'], env=_env(1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True, timeout=600)
  _, single_err = single.communicate(timeout=600)
  print(f'fine-tuning, 1 and 2 processes side by side: {time.time() - started:.0f} s')
  assert cluster.returncode == 0, cluster.stderr[-3000:]
  assert single.returncode == 0, single_err[-3000:]
  return one, two


def test_two_processes_finetune_exactly_as_one_process_with_two_devices(finetune_runs):
  one, two = finetune_runs
  runs = [w / 'split_0' for w in finetune_runs]
  assert _losses(runs[0]) == _losses(runs[1]) and len(_losses(runs[0])) == 2
  reports = [json.loads((w / 'report.json').read_text())['splits'][0] for w in (one, two)]
  assert reports[0]['predictions'] == reports[1]['predictions']
  for part in ('val', 'test'):
    test_programs.assert_same_metrics(reports[0][part], reports[1][part])
  (_, a), (_, b) = (checkpoints.restore_variables(str(run)) for run in runs)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_a_corrupt_image_read_by_one_process_ends_the_run_with_its_message(tmp_path):
  # Scoring batches of 16 images are split in two: process 1 alone loads positions 8-15. The
  # validation images are put first in a stated split, and the 9th is corrupted, so only
  # process 1 fails, while process 0 waits for its scores in a collective: the run must end
  # with process 1's message, not hang. (Images are not decoded up front here, or both
  # processes would refuse the file before training.)
  root = test_transfer.write_livec_root(tmp_path / 'livec', n=24)
  names = make_source('livec', root).metadata()['name']
  order = np.random.default_rng(0).permutation(len(names))
  val, test, train = order[:10], order[10:14], order[14:]
  split_file = tmp_path / 'splits.json'
  splits.save_splits(split_file, [{'train': train, 'val': val, 'test': test}])
  corrupt = next(pathlib.Path(root).rglob(str(names[val[8]])))
  corrupt.write_bytes(b'not an image')
  started = time.time()
  result = subprocess.run(
      ['bash', str(LAUNCH / 'local_cluster.sh'), '2', str(LAUNCH / 'finetune.py'),
       f'--config={_config_file(tmp_path, root)}', f'--config.finetune.split_file={split_file}',
       '--config.data.verify_images=False', f'--workdir={tmp_path / "run"}'], env=_env(1), capture_output=True, text=True,
      timeout=600)
  seconds = time.time() - started
  print(f'ended after {seconds:.0f} s with status {result.returncode}')
  assert result.returncode != 0
  assert 'metaiqa-finetune: error:' in result.stderr and corrupt.name in result.stderr, (
      result.stderr[-3000:])
  assert seconds < 300


def test_unreachable_coordinator_fails_with_one_line_in_bounded_time(tmp_path):
  started = time.time()
  result = subprocess.run(
      [sys.executable, str(LAUNCH / 'meta_train.py'), f'--config={_config_file(tmp_path)}',
       f'--workdir={tmp_path / "run"}', f'--coordinator_address=127.0.0.1:{_free_port()}',
       '--num_processes=2', '--process_id=1', '--distributed_timeout=5'],
      env=_env(1), capture_output=True, text=True, timeout=120)
  seconds = time.time() - started
  print(f'gave up after {seconds:.1f} s')
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.startswith('metaiqa-meta-train: error: could not join the multi-process '
                                  'run (coordinator 127.0.0.1:')
  assert 'process 1 of 2) within 5 s' in result.stderr
  assert seconds < 60
  assert not (tmp_path / 'run').exists()

"""Preemption: SIGTERM and SIGKILL at seeded random points of a training subprocess.

Both programs that train through the shared step loop are hit: meta-training (12 steps) and
fine-tuning (split 0 for 3 epochs of 22 steps), both checkpointed after every step. One
uninterrupted run is the reference. A second workdir is interrupted three times (SIGTERM,
SIGKILL, SIGTERM; fine-tuning, slower to start, twice), each time at a random delay after the
run's next checkpoint appears, then run to the end. After every interruption every committed
checkpoint must be readable; a SIGTERM must end the run gracefully (exit 143, the step it saved
named, that step on disk, the log cut there). The first signal comes after the first
validation, so the best-so-far checkpoint must survive resuming. The finished run must equal
the reference: reports, logged losses and final weights.

The worker's source sleeps per image so a step takes long enough (~0.2-0.3 s) to be hit.
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

from metaiqa_jax import checkpoints
from metaiqa_jax.train import reporting
import test_programs

_WORKER = """
import sys, time
sys.path.insert(0, {tests!r})
import test_programs
from metaiqa_jax.cli.programs import PREEMPTED_EXIT_STATUS
from metaiqa_jax.train import finetune, loop, meta_train

class Slow:
  def __init__(self, source):
    self.source = source
  def __len__(self):
    return len(self.source)
  def metadata(self):
    return self.source.metadata()
  def __getitem__(self, i):
    time.sleep({sleep})
    return self.source[i]

config = test_programs.tiny_config()
source = Slow(test_programs.tiny_source())
try:
{run}
except loop.Preempted as e:
  print(e, file=sys.stderr)
  sys.exit(PREEMPTED_EXIT_STATUS)
"""

# program -> (worker body, seconds of sleep per image read, the run directory inside the
# workdir: where its checkpoints, logs and weights are, the signals sent in turn, the longest
# delay in s after a new checkpoint appears).
PROGRAMS = {
    'meta_train': ("""
  config.num_steps = 12
  config.checkpoint_every = 1
  config.eval_every = 3
  meta_train.meta_train(config, {workdir!r}, source=source)""", 0.02, '',
                   (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM), 0.25),
    'finetune': ("""
  config.data.verify_images = False
  config.finetune.checkpoint_every = 1
  config.finetune.splits = (0,)
  config.finetune.epochs = 3
  finetune.finetune(config, {workdir!r}, source=source)""", 0.01, 'split_0',
                 (signal.SIGTERM, signal.SIGKILL), 1.5),
}


def _steps(run_dir):
  directory = os.path.join(run_dir, 'checkpoints')
  return sorted(int(s) for s in os.listdir(directory) if s.isdigit()) if os.path.isdir(
      directory) else []


def _start(program, workdir):
  body, sleep = PROGRAMS[program][:2]
  code = _WORKER.format(tests=os.path.dirname(test_programs.__file__), sleep=sleep,
                        run=body.format(workdir=str(workdir)))
  return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _run_to_end(program, workdir):
  proc = _start(program, workdir)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]


def _interrupt(program, workdir, run_dir, num_steps, sig, delay, after=0):
  """Starts a run, sends `sig` `delay` s after its first new checkpoint past step `after`;
  returns (rc, stderr)."""
  already = max(_steps(run_dir) + [after])
  proc = _start(program, workdir)
  deadline = time.time() + 600
  while max(_steps(run_dir), default=0) <= already and proc.poll() is None:
    assert time.time() < deadline
    time.sleep(0.02)
  assert max(_steps(run_dir)) + 2 < num_steps, 'too few steps left to interrupt'
  time.sleep(delay)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=600)
  return proc.returncode, err


def _losses(run_dir):
  return [(e['step'], e['metrics']['loss']) for e in reporting.read_metrics(run_dir, 'train')]


@pytest.mark.parametrize('program', PROGRAMS)
def test_sigterm_and_sigkill_then_resume_equals_uninterrupted(tmp_path, program):
  straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
  run_dir = lambda workdir: os.path.join(workdir, PROGRAMS[program][2])
  _run_to_end(program, straight)
  num_steps = max(_steps(run_dir(straight)))
  first_validation = reporting.read_metrics(run_dir(straight), 'val')[0]['step']
  rng = np.random.default_rng(8)
  signals, longest_delay = PROGRAMS[program][3:]
  for sig in signals:
    delay = float(rng.uniform(0.0, longest_delay))
    # The first signal comes after the first validation: resuming must keep its checkpoint.
    returncode, err = _interrupt(program, interrupted, run_dir(interrupted), num_steps, sig,
                                 delay, after=first_validation)
    steps = _steps(run_dir(interrupted))
    print(f'{sig.name} after {delay:.3f} s: exit {returncode}, checkpoints {steps}')
    assert 0 < max(steps) < num_steps
    if sig == signal.SIGKILL:
      assert returncode == -signal.SIGKILL
    else:
      assert returncode == 128 + signal.SIGTERM, err[-3000:]
      saved = int(re.search(r'SIGTERM received: stopped after .*?(\d+), saved as '
                            r'checkpoint step \1 in ', err).group(1))
      assert max(steps) == saved
      logged = [step for step, _ in _losses(run_dir(interrupted))]
      assert logged == [step for step, _ in _losses(run_dir(straight)) if step <= saved]
    for step in steps:
      checkpoints.restore_variables(os.path.join(run_dir(interrupted), 'checkpoints', str(step)))
  _run_to_end(program, interrupted)
  assert not os.path.exists(os.path.join(run_dir(interrupted), checkpoints.CORRUPT_DIRNAME))

  a, b = (json.load(open(os.path.join(run_dir(w), 'report.json')))
          for w in (straight, interrupted))
  if program == 'meta_train':
    test_programs.assert_same_metrics(a['final_val'], b['final_val'])
    assert a['best_step'] == b['best_step']
  else:
    assert a['predictions'] == b['predictions'] and a['best_epoch'] == b['best_epoch']
    for part in ('val', 'test'):
      test_programs.assert_same_metrics(a[part], b[part])
  assert _losses(run_dir(straight)) == _losses(run_dir(interrupted))
  final = lambda w: checkpoints.restore_variables(
      os.path.join(run_dir(w), 'checkpoints', str(num_steps)))
  (_, va), (_, vb) = final(straight), final(interrupted)
  jax.tree.map(np.testing.assert_array_equal, va, vb)

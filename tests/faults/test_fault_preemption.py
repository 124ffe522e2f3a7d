"""Preemption: SIGTERM and SIGKILL at seeded random points of a meta-training subprocess.

One uninterrupted 10-step run is the reference. A second workdir is interrupted three times
(SIGTERM, SIGKILL, SIGTERM), each time at a random delay after the run's next checkpoint appears,
then run to the end. After every interruption every committed checkpoint must be readable; a
SIGTERM must end the run gracefully (exit 143, the step it saved named, that step on disk). The
finished run must equal the reference: report, logged losses and final weights.

The worker's source sleeps 20 ms per image so a step takes long enough (~0.3 s) to be hit.
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

from metaiqa_jax import checkpoints
from metaiqa_jax.train import reporting
import test_programs

NUM_STEPS = 10
_WORKER = """
import sys, time
sys.path.insert(0, {tests!r})
import test_programs
from metaiqa_jax.cli.programs import PREEMPTED_EXIT_STATUS
from metaiqa_jax.train import common, meta_train

class Slow:
  def __init__(self, source):
    self.source = source
  def __len__(self):
    return len(self.source)
  def metadata(self):
    return self.source.metadata()
  def __getitem__(self, i):
    time.sleep(0.02)
    return self.source[i]

config = test_programs.tiny_config()
config.num_steps = {num_steps}
config.checkpoint_every = 1
config.eval_every = 3
try:
  meta_train.meta_train(config, {workdir!r}, source=Slow(test_programs.tiny_source()))
except common.Preempted as e:
  print(e, file=sys.stderr)
  sys.exit(PREEMPTED_EXIT_STATUS)
"""


def _steps(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(int(s) for s in os.listdir(directory) if s.isdigit()) if os.path.isdir(
      directory) else []


def _start(workdir):
  code = _WORKER.format(tests=os.path.dirname(test_programs.__file__), workdir=str(workdir),
                        num_steps=NUM_STEPS)
  return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _run_to_end(workdir):
  proc = _start(workdir)
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]


def _interrupt(workdir, sig, delay):
  """Starts a run, sends `sig` `delay` s after its first new checkpoint; returns (rc, stderr)."""
  already = max(_steps(workdir), default=0)
  assert already + 2 < NUM_STEPS, 'too few steps left to interrupt'
  proc = _start(workdir)
  deadline = time.time() + 600
  while max(_steps(workdir), default=0) <= already and proc.poll() is None:
    assert time.time() < deadline
    time.sleep(0.02)
  time.sleep(delay)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=600)
  return proc.returncode, err


def _assert_every_checkpoint_readable(workdir):
  for step in _steps(workdir):
    checkpoints.restore_variables(os.path.join(workdir, 'checkpoints', str(step)))


def test_sigterm_and_sigkill_then_resume_equals_uninterrupted(tmp_path):
  straight, interrupted = str(tmp_path / 'straight'), str(tmp_path / 'interrupted')
  _run_to_end(straight)
  rng = np.random.default_rng(8)
  for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
    delay = float(rng.uniform(0.0, 0.25))
    returncode, err = _interrupt(interrupted, sig, delay)
    steps = _steps(interrupted)
    print(f'{sig.name} after {delay:.3f} s: exit {returncode}, checkpoints {steps}')
    assert 0 < max(steps) < NUM_STEPS
    if sig == signal.SIGKILL:
      assert returncode == -signal.SIGKILL
    else:
      assert returncode == 128 + signal.SIGTERM, err[-3000:]
      saved = int(re.search(r'SIGTERM received: stopped after meta-step (\d+), saved as '
                            r'checkpoint step \1 in ', err).group(1))
      assert max(steps) == saved
      logged = [e['step'] for e in reporting.read_metrics(interrupted, 'train')]
      assert logged == list(range(1, saved + 1))
    _assert_every_checkpoint_readable(interrupted)
  _run_to_end(interrupted)
  assert not os.path.exists(os.path.join(interrupted, checkpoints.CORRUPT_DIRNAME))

  a = json.load(open(os.path.join(straight, 'report.json')))
  b = json.load(open(os.path.join(interrupted, 'report.json')))
  assert a['final_val'] == b['final_val']
  losses = lambda d: [(e['step'], e['metrics']['loss']) for e in reporting.read_metrics(d, 'train')]
  assert losses(straight) == losses(interrupted)
  assert a['best_step'] == b['best_step']
  final = lambda d: checkpoints.restore_variables(os.path.join(d, 'checkpoints', str(NUM_STEPS)))
  (_, va), (_, vb) = final(straight), final(interrupted)
  jax.tree.map(np.testing.assert_array_equal, va, vb)

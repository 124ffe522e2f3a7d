"""metaiqa_jax.workdir_lock: one run per workdir, stale locks taken over, released on every exit.

In-process, without JAX computations. The same through the `metaiqa-meta-train` launch (two
concurrent runs, SIGTERM) is in tests/faults/test_fault_workdir.py.
"""

import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time

import jax
import pytest

from metaiqa_jax import checkpoints, workdir_lock
from metaiqa_jax.train import loop


def lock_path(workdir):
  return os.path.join(workdir, workdir_lock.LOCK_FILENAME)


def write_lock(workdir, **holder):
  record = {'host': socket.gethostname(), 'pid': os.getppid(), 'started': time.time(),
            'command': 'metaiqa-meta-train --workdir=elsewhere', 'token': 'f' * 16} | holder
  os.makedirs(workdir, exist_ok=True)
  with open(lock_path(workdir), 'w') as f:
    json.dump(record, f)
  return record


def dead_pid():
  proc = subprocess.Popen(['true'])
  proc.wait()
  return proc.pid


def test_lock_names_its_holder_and_is_deleted_after_the_run(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lock.hold(workdir):
    holder = json.load(open(lock_path(workdir)))
    assert holder['pid'] == os.getpid() and holder['host'] == socket.gethostname()
    assert abs(holder['started'] - time.time()) < 60
    assert holder['command'] == shlex.join(sys.argv)
  assert os.listdir(workdir) == []


def test_a_live_holder_refuses_the_workdir_naming_its_pid(tmp_path):
  holder = write_lock(str(tmp_path))  # Our parent process: alive, on this host.
  with pytest.raises(workdir_lock.WorkdirLockedError) as error:
    with workdir_lock.hold(str(tmp_path)):
      pytest.fail('entered a held workdir')
  assert isinstance(error.value, checkpoints.WorkdirError)  # A user error: exit status 2.
  message = str(error.value)
  assert f'in use by another run (PID {holder["pid"]} on {holder["host"]}' in message
  assert holder['command'] in message and f'delete {lock_path(str(tmp_path))}' in message
  assert json.load(open(lock_path(str(tmp_path)))) == holder  # Untouched.


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
  pid = dead_pid()
  write_lock(str(tmp_path), pid=pid)
  with caplog.at_level(logging.WARNING), workdir_lock.hold(str(tmp_path)):
    assert json.load(open(lock_path(str(tmp_path))))['pid'] == os.getpid()
  assert 'taking over the stale lock' in caplog.text
  assert f'process {pid} no longer runs' in caplog.text
  assert not os.path.exists(lock_path(str(tmp_path)))


def test_lock_with_our_own_pid_is_a_restarted_container(tmp_path, caplog):
  write_lock(str(tmp_path), pid=os.getpid(), token='0' * 16)
  with caplog.at_level(logging.WARNING), workdir_lock.hold(str(tmp_path)):
    pass
  assert 'is this process (a restarted container)' in caplog.text


def test_lock_of_another_host_goes_stale_only_after_the_timeout(tmp_path, caplog):
  write_lock(str(tmp_path), host='node-17', pid=1)
  with pytest.raises(workdir_lock.WorkdirLockedError, match='PID 1 on node-17'):
    with workdir_lock.hold(str(tmp_path)):
      pass
  old = time.time() - workdir_lock.STALE_AFTER_S - 60
  os.utime(lock_path(str(tmp_path)), (old, old))
  with caplog.at_level(logging.WARNING), workdir_lock.hold(str(tmp_path)):
    pass
  assert 'has not been refreshed for 11 min' in caplog.text


def test_unreadable_lock_counts_as_held_until_it_is_old(tmp_path):
  os.makedirs(tmp_path / 'run')
  (tmp_path / 'run' / workdir_lock.LOCK_FILENAME).write_text('{"host": ')
  with pytest.raises(workdir_lock.WorkdirLockedError, match='unknown host'):
    with workdir_lock.hold(str(tmp_path / 'run')):
      pass


@pytest.mark.parametrize('error', [ValueError('a bug'), loop.Preempted('SIGTERM received'),
                                   KeyboardInterrupt()])
def test_lock_is_released_however_the_run_ends(tmp_path, error):
  with pytest.raises(type(error)):
    with workdir_lock.hold(str(tmp_path)):
      raise error
  assert not os.path.exists(lock_path(str(tmp_path)))
  with workdir_lock.hold(str(tmp_path)):  # Free for the next run.
    pass


def test_a_lock_taken_over_meanwhile_is_left_to_its_new_holder(tmp_path, caplog):
  with caplog.at_level(logging.WARNING), workdir_lock.hold(str(tmp_path)):
    other = write_lock(str(tmp_path), host='node-3', pid=99)
  assert json.load(open(lock_path(str(tmp_path)))) == other
  assert 'did not delete the lock' in caplog.text and 'PID 99 on node-3' in caplog.text


def test_holder_refreshes_its_lock(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, 'HEARTBEAT_S', 0.01)
  with workdir_lock.hold(str(tmp_path)):
    old = time.time() - 1000
    os.utime(lock_path(str(tmp_path)), (old, old))
    deadline = time.time() + 10
    while os.stat(lock_path(str(tmp_path))).st_mtime < old + 1 and time.time() < deadline:
      time.sleep(0.01)
    assert time.time() - os.stat(lock_path(str(tmp_path))).st_mtime < 60


def _as_process(monkeypatch, index, shared_token):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  monkeypatch.setattr(jax, 'process_index', lambda: index)
  monkeypatch.setattr(workdir_lock, '_shared_token', shared_token)


def test_processes_of_one_job_share_the_lock(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  broadcast = []
  _as_process(monkeypatch, 0, lambda token: broadcast.append(token) or token)
  with workdir_lock.hold(workdir):
    token = broadcast[0]
    assert json.load(open(lock_path(workdir)))['token'] == token
    _as_process(monkeypatch, 1, lambda _: token)  # The same job: goes on, writes nothing.
    with workdir_lock.hold(workdir):
      pass
    assert json.load(open(lock_path(workdir)))['token'] == token
    _as_process(monkeypatch, 1, lambda _: 'e' * 16)  # Process 0 of another job.
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f'PID {os.getpid()}'):
      with workdir_lock.hold(workdir):
        pass
  assert not os.path.exists(lock_path(workdir))


def test_when_process_0_is_refused_every_process_stops(tmp_path, monkeypatch):
  holder = write_lock(str(tmp_path))
  _as_process(monkeypatch, 0, lambda token: token)
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f'PID {holder["pid"]}'):
    with workdir_lock.hold(str(tmp_path)):
      pass
  _as_process(monkeypatch, 1, lambda token: '')  # What process 0 broadcast after its refusal.
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f'PID {holder["pid"]}'):
    with workdir_lock.hold(str(tmp_path)):
      pass


def test_a_second_hold_in_the_same_process_is_refused(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f'PID {os.getpid()}'):
      with workdir_lock.hold(str(tmp_path / '.')):
        pass
    assert os.path.exists(lock_path(str(tmp_path)))

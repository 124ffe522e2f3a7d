"""One owner per workdir: the lock file a run holds while it writes there.

`hold(workdir)` (every `metaiqa-*` program runs inside it, see `cli.programs`) creates
`workdir/run.lock`, a JSON record of the holder (host, PID, start time, command, a random
token), and deletes it when the block ends, however it ends (return, exception, `Preempted` after
SIGTERM). A second run on the same workdir gets `WorkdirLockedError` naming the holder, before it
compiles or writes anything.

A lock whose holder is gone is stale and taken over with a warning: on the holder's host, when
its PID no longer runs (or is the new run's own: a restarted container); from another host, when
it has not been refreshed for `STALE_AFTER_S` (the holder touches it every `HEARTBEAT_S`).

Multi-process runs (`jax.distributed`): process 0 takes the lock and broadcasts its token; the
other processes check that the lock file holds that token (they are the same job) and write
nothing, so all of them go on, or all stop with the same error.
"""

import contextlib
import datetime
import json
import logging
import os
import secrets
import shlex
import socket
import sys
import threading
import time

import jax
import numpy as np

from metaiqa_jax import checkpoints

LOCK_FILENAME = 'run.lock'
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0
_TOKEN_BYTES = 8

logger = logging.getLogger(__name__)
_held_here = set()  # Lock paths this process holds (its own PID on one is not a restart).


class WorkdirLockedError(checkpoints.WorkdirError):
  """Another live run holds the workdir; the message names it and how to proceed."""


def _describe(holder: dict) -> str:
  started = holder.get('started')
  when = (datetime.datetime.fromtimestamp(started).isoformat(' ', 'seconds')
          if isinstance(started, (int, float)) else 'at an unknown time')
  return (f"PID {holder.get('pid', '?')} on {holder.get('host', 'an unknown host')}, started "
          f"{when}, command: {holder.get('command', '?')}")


def _held_message(path: str, holder: dict) -> str:
  pid, host = holder.get('pid', '?'), holder.get('host', '?')
  return (f'workdir {os.path.dirname(path)} is in use by another run ({_describe(holder)}). '
          f'Wait for it to end, stop it (kill {pid} on {host}) or use another --workdir; if '
          f'that run is gone, delete {path}')


def _read(path: str) -> tuple[dict, float]:
  """The lock's holder record ({} if unreadable) and seconds since it was last refreshed.

  Raises:
    FileNotFoundError: there is no lock (any more).
  """
  age = time.time() - os.stat(path).st_mtime
  try:
    with open(path, encoding='utf-8') as f:
      holder = json.load(f)
  except ValueError:
    holder = {}
  return holder if isinstance(holder, dict) else {}, age


def _gone(path: str, holder: dict, age: float) -> str:
  """Why the holder of the lock `path` no longer runs, or '' while it may."""
  pid = holder.get('pid')
  if holder.get('host') == socket.gethostname() and isinstance(pid, int):
    if pid == os.getpid() and path not in _held_here:
      return f'its PID {pid} is this process (a restarted container)'
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return f'process {pid} no longer runs'
    except PermissionError:  # Alive, another user's.
      pass
    return ''
  if age > STALE_AFTER_S:
    return f'it has not been refreshed for {age / 60:.0f} min'
  return ''


def _create(path: str, record: dict) -> bool:
  """Creates the lock holding `record`, complete or not at all; False if one exists."""
  tmp = f'{path}.{record["token"]}'
  try:
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(record, f)
    os.link(tmp, path)
    return True
  except FileExistsError:
    return False
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def _take(path: str, record: dict) -> None:
  """Creates the lock, taking over a stale one; raises WorkdirLockedError if it is held."""
  for _ in range(3):  # The holder may release it, or another run take it, between our looks.
    if _create(path, record):
      return
    try:
      holder, age = _read(path)
    except FileNotFoundError:
      continue
    reason = _gone(path, holder, age)
    if not reason:
      raise WorkdirLockedError(_held_message(path, holder))
    logger.warning('taking over the stale lock %s of %s: %s', path, _describe(holder), reason)
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
  raise WorkdirLockedError(f'could not take {path}: other runs keep taking it')


def _release(path: str, token: str) -> None:
  """Deletes the lock if it is still ours (one left behind goes stale with its process)."""
  try:
    holder, _ = _read(path)
    if holder.get('token') == token:
      os.remove(path)
      return
    reason = f'it is now held by {_describe(holder)}'
  except OSError as e:
    reason = str(e)
  logger.warning('did not delete the lock %s: %s', path, reason)


def _shared_token(token: str) -> str:
  """Process 0's `token` ('' when it holds no lock), on every process."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(bytes.fromhex(token) if token else bytes(_TOKEN_BYTES), np.uint8)
  shared = bytes(np.asarray(multihost_utils.broadcast_one_to_all(data), np.uint8))
  return shared.hex() if any(shared) else ''


def _same_job(path: str, token: str) -> None:
  """On processes other than 0: raises WorkdirLockedError unless the lock holds `token`."""
  try:
    holder, _ = _read(path)
  except FileNotFoundError:
    holder = {}
  if not token or holder.get('token') != token:
    raise WorkdirLockedError(_held_message(path, holder) if holder else
                             f'process 0 holds no lock {path}: see its message')


def _refresh(path: str, stop: threading.Event) -> None:
  """Touches the lock every HEARTBEAT_S until `stop` is set, so it never looks stale."""
  while not stop.wait(HEARTBEAT_S):
    try:
      os.utime(path)
    except OSError as e:
      logger.warning('cannot refresh the lock %s (%s); a run on another host may take this '
                     'workdir over after %.0f s', path, e, STALE_AFTER_S)
      return


@contextlib.contextmanager
def hold(workdir):
  """Holds `workdir` (created if missing) for the block: see the module docstring.

  Raises:
    WorkdirLockedError: another live run holds it (names the holder and how to proceed).
    checkpoints.WorkdirError: the directory cannot be created or written.
  """
  path = os.path.join(os.path.realpath(checkpoints.ensure_writable(workdir)), LOCK_FILENAME)
  record = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': time.time(),
            'command': shlex.join(sys.argv), 'token': secrets.token_hex(_TOKEN_BYTES)}
  primary = jax.process_index() == 0
  error = None
  if primary:
    try:
      _take(path, record)
    except WorkdirLockedError as e:
      error = e
  if jax.process_count() > 1:
    token = _shared_token('' if error else record['token'])
    if not primary:
      _same_job(path, token)
  if error:
    raise error
  if not primary:
    yield
    return
  stop = threading.Event()
  heartbeat = threading.Thread(target=_refresh, args=(path, stop), daemon=True,
                               name='workdir-lock')
  heartbeat.start()
  _held_here.add(path)
  try:
    yield
  finally:
    _held_here.discard(path)
    stop.set()
    heartbeat.join()
    _release(path, record['token'])

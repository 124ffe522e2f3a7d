"""metaiqa_jax.storage: recognising a failed write in what the OS, orbax and tensorstore raise."""

import errno

import pytest

from metaiqa_jax import storage

_OCDBT = ('Error writing "params.w/0.0" in OCDBT database at local file "/w/checkpoints/4.orbax-'
          'checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed writing: "/w/d/b2"')


def _chained(error, cause):
  try:
    raise error from cause
  except type(error) as e:
    return e


@pytest.mark.parametrize('error, reason', [
    (OSError(errno.ENOSPC, 'No space left on device'), 'No space left on device'),
    (OSError(errno.EDQUOT, 'Disk quota exceeded'), 'Disk quota exceeded'),
    (PermissionError(errno.EACCES, 'Permission denied'), 'Permission denied'),
    (ValueError(f'RESOURCE_EXHAUSTED: {_OCDBT}: Failed to write 473710 bytes to file 4: No space '
                "left on device [os_error_code='28']"), 'No space left on device'),
    (ValueError(f'PERMISSION_DENIED: {_OCDBT}: Read-only file system [os_error_code=\'30\']'),
     'Read-only file system'),
    (ValueError(f'RESOURCE_EXHAUSTED: {_OCDBT}: Failed to write 65793 bytes to file 15'),
     'out of space or quota (RESOURCE_EXHAUSTED)'),
    (_chained(RuntimeError('commit failed'), OSError(errno.EROFS, 'Read-only file system')),
     'Read-only file system'),
])
def test_fault_reason_finds_the_failed_write_in_the_cause_chain(error, reason):
  assert storage.fault_reason(error) == reason


@pytest.mark.parametrize('error', [
    FileNotFoundError(errno.ENOENT, 'No such file or directory'), ValueError('shape (3,) != (4,)'),
    OSError(errno.EBADF, 'Bad file descriptor'), None])
def test_other_errors_are_not_storage_faults(error):
  assert storage.fault_reason(error) is None


def test_message_says_where_a_rerun_resumes():
  assert storage.stopped_message('x', 'No space left on device', 4) == (
      'could not write x: No space left on device. Make room or fix the file system; the last '
      'complete checkpoint is step 4: running the same command again resumes from it')
  assert 'no complete checkpoint yet, so running the same command again starts over' in (
      storage.stopped_message('x', 'No space left on device', None))

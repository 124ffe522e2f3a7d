"""Storage faults: a write to the workdir that failed for lack of space, quota, permission or a
writable file system, recognised in whatever reported it.

The OS raises `OSError` with an errno. Orbax raises tensorstore's error as a `ValueError` whose
message starts with a status code and often ends with the errno, e.g.
`RESOURCE_EXHAUSTED: Error writing ... No space left on device [os_error_code='28']`, usually from
a background thread at the next save or wait. `fault_reason` recognises both forms anywhere in an
exception's cause chain.

`StorageError` is what checkpoints and logs raise for such a fault: one message naming the path,
the step and the last complete checkpoint, which the programs print instead of a traceback.
`atomic_write_text` writes small files (reports, logs, splits) so that no reader, another process
of the run included, ever sees one half written.
"""

import errno
import os
import re
import tempfile
from typing import Optional

FAULT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EIO})
# tensorstore status codes of a failed write that carries no errno.
_STATUS_REASONS = {'RESOURCE_EXHAUSTED': 'out of space or quota (RESOURCE_EXHAUSTED)',
                   'PERMISSION_DENIED': 'permission denied or read-only (PERMISSION_DENIED)'}
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


class StorageError(OSError):
  """A checkpoint or log could not be written: no space left, quota exceeded, permission lost,
  read-only file system.

  The message names the path, the step that failed and the last complete checkpoint; the
  incomplete checkpoint is ignored, and deleted when the run resumes. The `metaiqa-*` programs
  print the message alone and exit with status 74 (EX_IOERR, `cli.programs.STORAGE_EXIT_STATUS`).
  """


def _chain(error: Optional[BaseException]):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def fault_reason(error: Optional[BaseException]) -> Optional[str]:
  """What made a write fail ('No space left on device', ...) when `error` or an exception in its
  cause chain is a storage fault; None for any other error."""
  for link in _chain(error):
    if isinstance(link, OSError) and link.errno in FAULT_ERRNOS:
      return os.strerror(link.errno)
    text = str(link)
    code = _OS_ERROR_CODE.search(text)
    if code and int(code.group(1)) in FAULT_ERRNOS:
      return os.strerror(int(code.group(1)))
    for status, reason in _STATUS_REASONS.items():
      if status in text:
        return reason
  return None


def stopped_message(what: str, reason: str, last_step: Optional[int]) -> str:
  """The message of a `StorageError`: `what` (path and step) could not be written for `reason`,
  and what running the same command again will do."""
  if last_step is None:
    then = 'there is no complete checkpoint yet, so running the same command again starts over'
  else:
    then = (f'the last complete checkpoint is step {last_step}: running the same command again '
            f'resumes from it')
  return f'could not write {what}: {reason}. Make room or fix the file system; {then}'


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` so readers see the old file or the new one, never a mix.

  Raises:
    OSError: naming `path` (a full disk reports no file name by itself).
  """
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and e.filename is None:
      raise OSError(e.errno, e.strerror, path) from e
    raise

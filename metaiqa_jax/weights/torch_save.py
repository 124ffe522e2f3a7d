"""Writing PyTorch state dicts as `torch.save` files, without torch.

The zip layout `torch.save` writes (torch >= 1.6; torch/serialization.py `_save` and
caffe2/serialize/inline_container.cc `PyTorchStreamWriter`), every record under one folder:

  archive/data.pkl            protocol-2 pickle of a `collections.OrderedDict` {key: tensor}; a
                              tensor is `torch._utils._rebuild_tensor_v2(storage, 0, size, stride,
                              False, OrderedDict())`, its storage the persistent id
                              `('storage', torch.<Type>Storage, '<n>', 'cpu', numel)`
  archive/.format_version     '1'
  archive/.storage_alignment  '64'
  archive/byteorder           'little'
  archive/data/<n>            storage n's elements, raw little-endian bytes (n = 0, 1, ... in
                              pickling order; one contiguous storage per tensor)
  archive/version             '3\\n'

Records are stored uncompressed, each one's data aligned to 64 bytes by a 'FB' extra field of
'Z' padding, as torch's writer does (`torch.load(..., mmap=True)` maps them in place). torch's
random `.data/serialization_id` record is left out (nothing reads it to load), so the bytes
depend only on the tensors. The file holds no code: its only globals are
`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and `torch.<Type>Storage`, all on
the allowlist of `torch.load(weights_only=True)` and of `metaiqa_jax.weights.torch_pickle`, which
reads these files back.
"""

import io
import os
import secrets
import struct
import zipfile
from typing import Mapping

import numpy as np

from metaiqa_jax.weights.torch_pickle import _STORAGE_DTYPES

ARCHIVE_NAME = 'archive'
STORAGE_ALIGNMENT = 64
_ZIP_LOCAL_HEADER_SIZE = 30
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_STORAGE_TYPES = {np.dtype(dtype): name for name, dtype in _STORAGE_DTYPES.items()
                  if name != 'UntypedStorage'}


# ---- protocol-2 pickle opcodes (see `pickletools`) ----------------------------------------------

def _global(module: str, name: str) -> bytes:
  return b'c' + module.encode('ascii') + b'\n' + name.encode('ascii') + b'\n'


def _str(text: str) -> bytes:
  data = text.encode('utf-8')
  return b'X' + struct.pack('<I', len(data)) + data


def _int(n: int) -> bytes:
  if 0 <= n < 0x100:
    return b'K' + bytes([n])
  if 0 <= n < 0x10000:
    return b'M' + struct.pack('<H', n)
  if -0x80000000 <= n < 0x80000000:
    return b'J' + struct.pack('<i', n)
  data = n.to_bytes(n.bit_length() // 8 + 1, 'little', signed=True)
  return b'\x8a' + bytes([len(data)]) + data


def _tuple(items: list[bytes]) -> bytes:
  if not items:
    return b')'
  if len(items) <= 3:
    return b''.join(items) + b'\x85\x86\x87'[len(items) - 1:len(items)]
  return b'(' + b''.join(items) + b't'


_EMPTY_ORDERED_DICT = _global('collections', 'OrderedDict') + b')R'


def _tensor(storage_type: str, key: str, shape: tuple[int, ...]) -> bytes:
  """`_rebuild_tensor_v2` of a C-contiguous tensor that is the whole of storage `key`."""
  numel = int(np.prod(shape, dtype=np.int64))
  strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
  storage = _tuple([_str('storage'), _global('torch', storage_type), _str(key), _str('cpu'),
                    _int(numel)]) + b'Q'
  args = [storage, _int(0), _tuple([_int(int(n)) for n in shape]),
          _tuple([_int(s) for s in strides]), b'\x89', _EMPTY_ORDERED_DICT]
  return _global('torch._utils', '_rebuild_tensor_v2') + _tuple(args) + b'R'


def _storage_type(key: str, array: np.ndarray) -> str:
  try:
    return _STORAGE_TYPES[array.dtype.newbyteorder('=')]
  except KeyError:
    raise ValueError(f'tensor {key!r}: dtype {array.dtype} has no torch storage type '
                     f'(supported: {sorted(str(d) for d in _STORAGE_TYPES)})') from None


def state_dict_bytes(state: Mapping[str, np.ndarray]) -> bytes:
  """The bytes `torch.save(state_dict)` would write for `{key: array}` (see the module docstring).

  Args:
    state: str keys -> numpy arrays (any shape, 0-d included; dtypes float64/32/16, bfloat16,
      int64/32/16/8, uint8, bool). Order is kept.

  Returns:
    A zip archive; the same bytes for the same keys, shapes, dtypes and values.

  Raises:
    ValueError: a key that is not a str, or an unsupported dtype.
  """
  pickled = [b'\x80\x02', _EMPTY_ORDERED_DICT]
  storages = []
  if state:
    pickled.append(b'(')
  for i, (key, value) in enumerate(state.items()):
    if not isinstance(key, str):
      raise ValueError(f'state dict keys must be str, got {key!r}')
    array = np.asarray(value)
    storage_key = str(i)
    pickled += [_str(key), _tensor(_storage_type(key, array), storage_key, array.shape)]
    little = array.astype(array.dtype.newbyteorder('<'), order='C', copy=False)
    storages.append((f'data/{storage_key}', little.tobytes(order='C')))
  if state:
    pickled.append(b'u')
  pickled.append(b'.')
  records = [('data.pkl', b''.join(pickled)), ('.format_version', b'1'),
             ('.storage_alignment', str(STORAGE_ALIGNMENT).encode()), ('byteorder', b'little'),
             *storages, ('version', b'3\n')]

  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as archive:
    for name, data in records:
      info = zipfile.ZipInfo(f'{ARCHIVE_NAME}/{name}', date_time=_ZIP_DATE)
      info.external_attr = 0o644 << 16
      # Local header, name, then the extra field's 4-byte ('FB', size) header: pad to alignment.
      start = buffer.tell() + _ZIP_LOCAL_HEADER_SIZE + len(info.filename) + 4
      padding = -start % STORAGE_ALIGNMENT
      info.extra = b'FB' + struct.pack('<H', padding) + b'Z' * padding
      archive.writestr(info, data)
  return buffer.getvalue()


def save_state_dict(path, state: Mapping[str, np.ndarray], *, overwrite: bool = False) -> int:
  """Writes `state` as a `torch.save` file, atomically (a temporary file, then a rename).

  Args:
    path: the file to write. Its folder must exist.
    state: see `state_dict_bytes`.
    overwrite: replace an existing `path`; otherwise an existing file is left as it is.

  Returns:
    The number of bytes written.

  Raises:
    FileExistsError: `path` exists and not `overwrite`.
    ValueError: see `state_dict_bytes`.
    OSError: the folder is missing or not writable (nothing is left behind).
  """
  path = os.fspath(path)
  if not overwrite and os.path.lexists(path):
    raise FileExistsError(f'{path} exists (pass overwrite to replace it)')
  data = state_dict_bytes(state)
  folder, name = os.path.split(os.path.abspath(path))
  temporary = os.path.join(folder, f'.{name}.{secrets.token_hex(4)}.tmp')
  fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    if not overwrite and os.path.lexists(path):
      raise FileExistsError(f'{path} appeared while it was being written; left as it is')
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.unlink(temporary)
    raise
  return len(data)


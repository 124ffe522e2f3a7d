"""Reading PyTorch `.pt`/`.pth` files into numpy, without torch and without running pickled code.

`torch.save` writes a pickle. Unpickling normally imports and calls whatever the file names, so a
crafted file can run arbitrary code. `read_torch_file` unpickles with a restricted `find_class`:

* a short allowlist of callables is answered with local, side-effect-free re-implementations
  (`torch._utils._rebuild_tensor_v2` builds a numpy array, `collections.OrderedDict`, `set`,
  `torch.Size`, the `torch.*Storage` types, `torch` dtypes, ...);
* a global from the Python standard library (`os.system`, `builtins.eval`, `subprocess.Popen`,
  `builtins.__import__`, ...) is refused at once with `UnsafePickleError`;
* any other global (the authors' `__main__.Net`, `torchvision.models.resnet.ResNet`,
  `torch.nn.modules.conv.Conv2d`, ...) becomes an inert placeholder class named after it. A
  placeholder can only be instantiated the way pickle rebuilds plain objects (NEWOBJ, i.e.
  `cls.__new__`) and filled by BUILD, which stores the state in `.state`; calling it (REDUCE,
  INST, OBJ: the way a pickle runs a function) raises `UnsafePickleError` naming the global.

So every callable a file can reach is either allowlisted or refuses to run; nothing is imported.

Tensor data (`persistent_load`): in the zip format (torch >= 1.6) storage `k` is the archive
entry `<name>/data/k`, raw bytes in the byte order of `<name>/byteorder`; in the legacy format the
main pickle is preceded by three small pickles (magic number, protocol version, sys info) and
followed by a pickled list of storage keys and then, per key, an int64 element count and the raw
bytes. Tensors come back as numpy arrays (views of their storage, in the file's dtype; bfloat16
via `ml_dtypes`).
"""

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

_LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_, 'UntypedStorage': np.uint8,
}
_TORCH_DTYPES = {
    'float64': np.float64, 'double': np.float64, 'float32': np.float32, 'float': np.float32,
    'float16': np.float16, 'half': np.float16, 'bfloat16': ml_dtypes.bfloat16,
    'int64': np.int64, 'long': np.int64, 'int32': np.int32, 'int': np.int32, 'int16': np.int16,
    'short': np.int16, 'int8': np.int8, 'uint8': np.uint8, 'bool': np.bool_,
}
# Python 2 names that protocol-2 pickles use for the standard library.
_PY2_STDLIB_MODULES = frozenset({'__builtin__', 'copy_reg', 'cPickle', 'commands'})


class UnsafePickleError(ValueError):
  """The file asks to import or call something that is not a tensor or a container.

  `global_name` is the offending `module.name`.
  """

  def __init__(self, global_name: str, reason: str):
    self.global_name = global_name
    super().__init__(f'refusing to load: the pickle {reason} {global_name!r}; only tensors, '
                     'containers and inert placeholders for module classes are allowed')


class TorchFileError(ValueError):
  """The file is not a PyTorch checkpoint this reader understands (names the path and why)."""

  def __init__(self, path, reason: str):
    self.path = os.fspath(path)
    super().__init__(f'cannot read {self.path} as a PyTorch file: {reason}')


class _PlaceholderMeta(type):
  """Metaclass of placeholders: calling one (REDUCE/INST/OBJ) is refused."""

  def __call__(cls, *args, **kwargs):
    raise UnsafePickleError(cls.global_name, 'tries to call')


class PickledObject(metaclass=_PlaceholderMeta):
  """An object of a class this reader does not import, e.g. a pickled `torch.nn.Module`.

  Attributes:
    global_name: the pickled class, `'module.QualName'` (e.g. `'__main__.Net'`).
    args: the NEWOBJ arguments (usually `()`).
    state: what BUILD passed (a module's `__dict__`: `_parameters`, `_buffers`, `_modules`, ...),
      or None.
  """
  global_name = 'PickledObject'

  def __new__(cls, *args, **kwargs):
    obj = object.__new__(cls)
    object.__setattr__(obj, 'args', args)
    object.__setattr__(obj, 'state', None)
    return obj

  def __setstate__(self, state):
    object.__setattr__(self, 'state', state)

  def __repr__(self):
    return f'<pickled {self.global_name}>'


class _StorageType:
  """Stands for `torch.FloatStorage` etc.: only carries the element dtype."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])

  def __call__(self, *args, **kwargs):
    raise UnsafePickleError(f'torch.{self.name}', 'tries to call')


def _rebuild_tensor(storage, storage_offset, size, stride):
  """A numpy view of `storage` (1-D) with torch's offset/size/stride (in elements)."""
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if len(size) != len(stride):
    raise ValueError(f'tensor size {size} and stride {stride} differ in rank')
  if any(n == 0 for n in size):
    return np.zeros(size, storage.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if storage_offset < 0 or any(s < 0 for s in stride) or last >= storage.size:
    raise ValueError(f'tensor (offset {storage_offset}, size {size}, stride {stride}) '
                     f'does not fit its storage of {storage.size} elements')
  item = storage.itemsize
  return np.lib.stride_tricks.as_strided(storage[storage_offset:], size,
                                         tuple(s * item for s in stride), writeable=False)


def _check_metadata(metadata):
  if metadata and any(metadata.values()):
    raise ValueError(f'tensors with conj/neg bits are not supported (metadata {metadata})')


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
  del requires_grad, backward_hooks
  _check_metadata(metadata)
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  del requires_grad, backward_hooks
  _check_metadata(metadata)
  return _rebuild_tensor(storage.view(dtype), storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  del requires_grad, backward_hooks, state
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  # `func` came out of the same find_class, so it is allowlisted or refuses to run.
  del new_type, state
  return func(*args)


def _torch_size(dims=()):
  return tuple(int(d) for d in dims)


_ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('__builtin__', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('__builtin__', 'frozenset'): frozenset,
    ('torch', 'Size'): _torch_size,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter_with_state,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
}
_ALLOWED.update({('torch', name): _StorageType(name) for name in _STORAGE_DTYPES})
_ALLOWED.update({('torch', name): np.dtype(dtype) for name, dtype in _TORCH_DTYPES.items()})


class _RestrictedUnpickler(pickle.Unpickler):
  """`pickle.Unpickler` whose globals are allowlisted, refused or inert placeholders."""

  def __init__(self, file, load_storage):
    super().__init__(file)
    self._load_storage = load_storage
    self._placeholders = {}

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    global_name = f'{module}.{name}'
    top = module.split('.')[0]
    if top in sys.stdlib_module_names or top in _PY2_STDLIB_MODULES:
      raise UnsafePickleError(global_name, 'imports the standard-library global')
    if global_name not in self._placeholders:
      self._placeholders[global_name] = _PlaceholderMeta(
          name, (PickledObject,), {'global_name': global_name, '__module__': __name__})
    return self._placeholders[global_name]

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid:
      raise ValueError(f'unexpected persistent id {pid!r}')
    if pid[0] == 'module':  # Legacy format: ('module', class, source file, source).
      return pid[1]
    if pid[0] == 'storage':
      return self._load_storage(*pid[1:])
    raise ValueError(f'unexpected persistent id type {pid[0]!r}')


def _storage_dtype(storage_type) -> np.dtype:
  if not isinstance(storage_type, _StorageType):
    raise ValueError(f'unknown storage type {storage_type!r}')
  return storage_type.dtype


def _read_zip(path, archive: zipfile.ZipFile) -> Any:
  pickles = [n for n in archive.namelist() if n.endswith('data.pkl') and n.count('/') == 1]
  if len(pickles) != 1:
    raise TorchFileError(path, 'a zip file without exactly one <name>/data.pkl entry '
                         '(is it a torch.save file?)')
  prefix = pickles[0][:-len('data.pkl')]
  names = set(archive.namelist())
  byteorder = 'little'
  if prefix + 'byteorder' in names:
    byteorder = archive.read(prefix + 'byteorder').decode().strip()
  storages = {}

  def load_storage(storage_type, key, location, numel):
    del location
    dtype = _storage_dtype(storage_type).newbyteorder('<' if byteorder == 'little' else '>')
    if key not in storages:
      entry = f'{prefix}data/{key}'
      if entry not in names:
        raise TorchFileError(path, f'missing tensor data entry {entry}')
      data = np.frombuffer(archive.read(entry), dtype=np.uint8)
      storages[key] = data
    data = storages[key]
    if data.size < numel * dtype.itemsize:
      raise TorchFileError(path, f'storage {key} holds {data.size} bytes, '
                           f'{numel} x {dtype.itemsize} expected')
    return data[:numel * dtype.itemsize].view(dtype)

  with archive.open(pickles[0]) as f:
    return _RestrictedUnpickler(io.BufferedReader(f), load_storage).load()


def _read_legacy(path, f) -> Any:
  def no_storage(*args):
    raise TorchFileError(path, 'tensor data in a header pickle')

  try:
    magic = _RestrictedUnpickler(f, no_storage).load()
  except (pickle.UnpicklingError, EOFError, ValueError) as e:
    if isinstance(e, UnsafePickleError):
      raise
    raise TorchFileError(path, 'neither a zip archive nor a legacy torch.save pickle '
                         f'({type(e).__name__}: {e})') from e
  if magic != _LEGACY_MAGIC_NUMBER:
    raise TorchFileError(path, 'a pickle without the torch.save magic number (a plain pickle '
                         'is not a PyTorch checkpoint)')
  protocol = _RestrictedUnpickler(f, no_storage).load()
  if protocol != _LEGACY_PROTOCOL_VERSION:
    raise TorchFileError(path, f'unsupported legacy protocol version {protocol}')
  sys_info = _RestrictedUnpickler(f, no_storage).load()
  little = sys_info.get('little_endian', True) if isinstance(sys_info, dict) else True
  order = '<' if little else '>'
  storages = {}

  def load_storage(storage_type, root_key, location, numel, view_metadata=None):
    del location
    if root_key not in storages:
      storages[root_key] = np.empty(numel, _storage_dtype(storage_type).newbyteorder(order))
    root = storages[root_key]
    if view_metadata is None:
      return root
    _, offset, view_size = view_metadata
    return root[offset:offset + view_size]

  result = _RestrictedUnpickler(f, load_storage).load()
  keys = _RestrictedUnpickler(f, no_storage).load()
  for key in keys:
    if key not in storages:
      raise TorchFileError(path, f'data for storage {key} that no tensor uses')
    storage = storages[key]
    header = f.read(8)
    if len(header) != 8:
      raise TorchFileError(path, f'truncated before storage {key}')
    (numel,) = struct.unpack(order + 'q', header)
    if numel != storage.size:
      raise TorchFileError(path, f'storage {key} has {numel} elements, {storage.size} expected')
    raw = f.read(storage.nbytes)
    if len(raw) != storage.nbytes:
      raise TorchFileError(path, f'truncated inside storage {key}')
    storage[...] = np.frombuffer(raw, storage.dtype)
  return result


def read_torch_file(path) -> Any:
  """Unpickles a `torch.save` file safely.

  Args:
    path: a `.pt`/`.pth` file, zip (torch >= 1.6) or legacy format.

  Returns:
    The saved object with tensors as numpy arrays (file dtype and shape), `OrderedDict`s and
    other containers as themselves, and objects of non-allowlisted classes (e.g. whole pickled
    `nn.Module`s) as `PickledObject` placeholders whose `.state` holds their pickled `__dict__`.

  Raises:
    UnsafePickleError: the pickle names a standard-library global or tries to call anything
      outside the allowlist. Nothing from the file has run.
    TorchFileError: not a torch.save file (names the path and why), or a corrupt one.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise TorchFileError(path, 'no such file')
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        return _read_zip(path, archive)
    with open(path, 'rb') as f:
      return _read_legacy(path, f)
  except (UnsafePickleError, TorchFileError):
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
          KeyError, zipfile.BadZipFile) as e:
    raise TorchFileError(path, f'corrupt or unsupported content ({type(e).__name__}: {e})') from e

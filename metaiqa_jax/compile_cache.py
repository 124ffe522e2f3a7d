"""The persistent XLA compilation cache the programs use, so a second run starts in seconds.

Compiling a meta-step takes tens of seconds on a CPU; every `metaiqa-*` program therefore keeps
JAX's persistent compilation cache (compiled executables on disk, keyed by the program, the
devices and the JAX version) in a folder under the user's cache directory. A run that compiles
what an earlier run compiled reads it instead. What a program computes does not change.

Folder: `--compilation_cache=DIR` of a program; default `$JAX_COMPILATION_CACHE_DIR` when it is
set, else `$XDG_CACHE_HOME/metaiqa_jax/xla` (`~/.cache/metaiqa_jax/xla`). `off` (or an empty
value) turns it off. Executables that compiled in under
`jax_persistent_cache_min_compile_time_secs` (JAX's default: 1 s) are not stored.
"""

import logging
import os

import jax

OFF = ('', 'off')


def default_dir() -> str:
  """`$JAX_COMPILATION_CACHE_DIR`, else `$XDG_CACHE_HOME/metaiqa_jax/xla`
  (`~/.cache/metaiqa_jax/xla` when XDG_CACHE_HOME is unset)."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'metaiqa_jax', 'xla')


def enable(directory: str) -> str | None:
  """Points JAX's persistent compilation cache at `directory` (created if missing).

  Returns the folder in use, or None when `directory` is 'off' / '' or cannot be created: a
  cache that cannot be written is reported as a warning and the run goes on without it.
  """
  if directory.strip().lower() in OFF:
    jax.config.update('jax_compilation_cache_dir', None)
    return None
  directory = os.path.abspath(os.path.expanduser(directory))
  try:
    os.makedirs(directory, exist_ok=True)
    if not os.access(directory, os.W_OK):
      raise PermissionError(f'{directory} is not writable')
  except OSError as e:
    logging.warning('compilation cache %s unusable (%s); compiling without it. Choose another '
                    'folder with --compilation_cache=DIR or turn it off with '
                    '--compilation_cache=off', directory, e)
    jax.config.update('jax_compilation_cache_dir', None)
    return None
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory

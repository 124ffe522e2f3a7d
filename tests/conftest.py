"""Test-session settings: CPU only, one persistent XLA compilation cache for the session, and
the files that take minutes first.

Compilation dominates these tests; the cache lets identical programs (the same tiny model
compiled by several tests, or by a test's subprocesses, which inherit the environment
variable) compile once. With `-n 2` each file runs in one worker, in collection order: the long
files go first so they overlap the many short ones instead of ending the run one by one.
"""

import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      tempfile.mkdtemp(prefix='metaiqa-jax-test-xla-cache-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))

# Minutes each on 2 cores, longest first (measured: `pytest --durations`).
_LONG_FILES = ('test_multiprocess.py', 'test_fault_workdir.py', 'test_fault_preemption.py',
               'test_transfer.py', 'test_fault_training.py', 'test_programs.py', 'test_demo.py',
               'test_meta.py')


def pytest_collection_modifyitems(items):
  """Moves the tests of `_LONG_FILES` to the front, in that order (stable otherwise)."""
  def rank(item):
    name = item.path.name
    return _LONG_FILES.index(name) if name in _LONG_FILES else len(_LONG_FILES)
  items.sort(key=rank)

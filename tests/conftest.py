"""Test-session settings: CPU only, and one persistent XLA compilation cache for the session.

Compilation dominates these tests; the cache lets identical programs (the same tiny model
compiled by several tests, or by a test's subprocesses, which inherit the environment
variable) compile once.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  # Made by the first process of the session (pytest-xdist's workers and the tests'
  # subprocesses inherit it) and removed when that process exits.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='metaiqa-jax-test-xla-cache-')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  float(os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS']))

# Test files that take minutes (shared fixtures, subprocesses; seconds of one worker on a 2-core
# CPU, from `--durations`). `-n 2 --dist loadfile --no-loadscope-reorder` deals files out to the
# workers in collection order, so these go first, heaviest first: xdist's own order (most tests
# first) started the 2-test preemption file last, and it ran alone for minutes.
SLOW_FILES = {'test_multiprocess.py': 600, 'test_fault_workdir.py': 380,
              'test_fault_preemption.py': 330, 'test_programs.py': 320, 'test_meta.py': 240,
              'test_demo.py': 190, 'test_transfer.py': 180, 'test_fault_training.py': 100}


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  items.sort(key=lambda item: -SLOW_FILES.get(item.path.name, 0))  # Stable: file order stays.

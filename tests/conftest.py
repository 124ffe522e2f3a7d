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

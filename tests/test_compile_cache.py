"""compile_cache: the programs' persistent XLA compilation cache (folder, off switch, faults)."""

import os
import subprocess
import sys

import jax
import pytest

from metaiqa_jax import compile_cache

_COMPILE_ONCE = '''
import sys, jax
from metaiqa_jax import compile_cache
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
print(compile_cache.enable(sys.argv[1]))
print(jax.jit(lambda x: x * 2 + 1)(1.0))
'''


@pytest.fixture
def keep_jax_cache_setting():
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update('jax_compilation_cache_dir', before)


def _compile_in_subprocess(directory: str) -> list[str]:
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  out = subprocess.run([sys.executable, '-c', _COMPILE_ONCE, directory], env=env, check=True,
                       capture_output=True, text=True).stdout.split()
  return out


def test_default_folder_follows_jax_then_xdg_then_home(monkeypatch, tmp_path):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'jax'))
  assert compile_cache.default_dir() == str(tmp_path / 'jax')
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert compile_cache.default_dir() == str(tmp_path / 'xdg' / 'metaiqa_jax' / 'xla')
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert compile_cache.default_dir() == str(tmp_path / 'home' / '.cache' / 'metaiqa_jax' / 'xla')


def test_compiled_programs_are_stored_in_the_folder_and_off_stores_nothing(tmp_path):
  cache = tmp_path / 'new' / 'cache'
  printed = _compile_in_subprocess(str(cache))
  assert printed == [str(cache), '3.0']
  assert os.listdir(cache), 'the compiled function was not stored'
  assert _compile_in_subprocess('off') == ['None', '3.0']


def test_unusable_folder_warns_and_runs_without_cache(tmp_path, keep_jax_cache_setting, caplog):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  assert compile_cache.enable(str(blocker / 'cache')) is None
  assert jax.config.jax_compilation_cache_dir is None
  assert 'compilation cache' in caplog.text and '--compilation_cache=off' in caplog.text

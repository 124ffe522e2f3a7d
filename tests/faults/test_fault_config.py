"""Bad configs are refused by key before anything is written or compiled.

In-process through `meta_train` (the workdir is not even created: validation comes first), and
through the `metaiqa-meta-train` launch in a subprocess with JAX_LOG_COMPILES=1, whose stderr must
name the key and show no XLA compilation.
"""

import os
import subprocess
import sys
import time

import ml_collections
import pytest

from metaiqa_jax import configlib
from metaiqa_jax.train import defaults, meta_train
import test_programs

LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), 'launch', 'meta_train.py')
_CONFIG_FILE = """
import sys
sys.path.insert(0, {tests!r})
import test_programs

def get_config():
  return test_programs.tiny_config()
"""


def _with(dotted, value) -> ml_collections.ConfigDict:
  """The tiny config with `dotted` set to `value`, bypassing ConfigDict's own type checks (as a
  config file returning a fresh ConfigDict would)."""
  tree = test_programs.tiny_config().to_dict()
  *sections, key = dotted.split('.')
  node = tree
  for section in sections:
    node = node[section]
  node[key] = value
  return ml_collections.ConfigDict(tree)


@pytest.mark.parametrize('key, value, message', [
    ('meta.inner_stpes', 2, r"unknown config key 'meta\.inner_stpes'.*meta\.inner_steps"),
    ('model.width', 'wide', r"'model\.width'.*float"),
    ('meta.inner_steps', 0, r"'meta\.inner_steps' = 0 must be >= 1"),
    ('meta.tasks_per_batch', 2.5, r"'meta\.tasks_per_batch'.*int"),
])
def test_meta_train_refuses_bad_config_before_touching_the_workdir(tmp_path, key, value,
                                                                   message):
  config = _with(key, value)
  workdir = tmp_path / 'run'
  with pytest.raises(configlib.ConfigError, match=message):
    meta_train.meta_train(config, str(workdir), source=object())
  assert not workdir.exists()


def test_task_count_must_divide_over_the_devices():
  config = test_programs.tiny_config()
  config.meta.tasks_per_batch = 6
  rules = dict(defaults.RULES, **{'meta.tasks_per_batch': [
      configlib.multiple_of_device_count(4)]})
  with pytest.raises(configlib.ConfigError, match=r"'meta\.tasks_per_batch' = 6 must be a "
                                                  r'multiple of the device count \(4\)'):
    configlib.validate(config, defaults.base_config(), rules)


def _launch(tmp_path, *overrides, devices=1):
  config_file = tmp_path / 'tiny_config.py'
  config_file.write_text(_CONFIG_FILE.format(tests=os.path.dirname(test_programs.__file__)))
  env = dict(os.environ, JAX_LOG_COMPILES='1',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  started = time.time()
  result = subprocess.run(
      [sys.executable, LAUNCH, f'--config={config_file}', f'--workdir={tmp_path / "run"}',
       *overrides], capture_output=True, text=True, timeout=300, env=env)
  return result, time.time() - started


def test_launch_refuses_misspelled_override_by_name(tmp_path):
  result, seconds = _launch(tmp_path, '--config.meta.inner_stpes=2')
  print(f'misspelled override refused in {seconds:.1f} s')
  assert result.returncode != 0
  assert 'inner_stpes' in result.stderr
  assert 'Compiling' not in result.stderr
  assert not (tmp_path / 'run').exists()


def test_launch_refuses_task_count_not_divisible_by_4_devices(tmp_path):
  result, seconds = _launch(tmp_path, '--config.meta.tasks_per_batch=6', devices=4)
  print(f'task count refused in {seconds:.1f} s')
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.startswith('metaiqa-meta-train: error: invalid config:')
  assert ("config key 'meta.tasks_per_batch' = 6 must be a multiple of the device count (4)"
          in result.stderr)
  assert 'Compiling' not in result.stderr
  assert not (tmp_path / 'run').exists()

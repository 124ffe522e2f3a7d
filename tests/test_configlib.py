"""metaiqa_jax.configlib: unknown keys (with suggestions), types and value rules, by key name."""

import jax
import ml_collections
import pytest

from metaiqa_jax import configlib


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.arch = 'resnet18'
  config.head_features = (16, 8)
  config.init_weights = None
  config.meta = ml_collections.ConfigDict()
  config.meta.algorithm = 'maml'
  config.meta.inner_steps = 1
  config.meta.inner_lr = 0.01
  config.meta.tasks_per_batch = 2
  config.meta.first_order = False
  config.optim = ml_collections.ConfigDict()
  config.optim.outer_lr = 1e-4
  return config


RULES = {
    'meta.inner_steps': [configlib.at_least(1)],
    'meta.inner_lr': [configlib.positive()],
    'meta.tasks_per_batch': [configlib.at_least(1), configlib.multiple_of_device_count()],
    'meta.algorithm': [configlib.one_of('maml', 'first_order', 'reptile')],
    'optim.outer_lr': [configlib.positive(), configlib.in_range(0, 1)],
}


def check(config):
  configlib.validate(config, get_config(), RULES)


def test_reference_config_is_valid():
  check(get_config())
  config = get_config()
  config.meta.inner_lr = 1  # An int where the default is a float is fine.
  config.head_features = [32, 16]  # A list where the default is a tuple too.
  config.init_weights = '/weights/metaiqa.pt'  # Anything where the default is None.
  check(config)


def test_misspelled_key_suggests_the_valid_one():
  config = get_config().to_dict()
  config['meta']['inner_step'] = config['meta'].pop('inner_steps')
  with pytest.raises(configlib.ConfigError) as error:
    check(config)
  message = str(error.value)
  assert "unknown config key 'meta.inner_step'; did you mean 'meta.inner_steps'?" in message
  assert "config key 'meta.inner_steps' is missing" in message


def test_unknown_key_without_close_match_lists_valid_keys():
  config = get_config()
  config.optim.unlock()
  config.optim.zzz = 1
  with pytest.raises(configlib.ConfigError, match=r"unknown config key 'optim.zzz'; "
                                                  r"valid keys: \['optim.outer_lr'\]"):
    check(config)


@pytest.mark.parametrize('key, value, expected', [
    ('inner_steps', 1.5, "'meta.inner_steps' = 1.5 has type float, expected int"),
    ('inner_steps', True, "'meta.inner_steps' = True has type bool, expected int"),
    ('first_order', 1, "'meta.first_order' = 1 has type int, expected bool"),
    ('algorithm', 3, "'meta.algorithm' = 3 has type int, expected str"),
])
def test_wrong_types(key, value, expected):
  config = get_config().to_dict()
  config['meta'][key] = value
  with pytest.raises(configlib.ConfigError, match=expected.replace('.', r'\.')):
    check(config)


def test_section_replaced_by_a_value():
  config = get_config().to_dict()
  config['optim'] = 0.1
  with pytest.raises(configlib.ConfigError, match="'optim' must be a section of settings"):
    check(config)


def test_value_rules_name_the_key_and_all_problems_are_reported():
  config = get_config()
  config.meta.inner_steps = 0
  config.optim.outer_lr = -1e-3
  config.meta.algorithm = 'mamll'
  with pytest.raises(configlib.ConfigError) as error:
    check(config)
  lines = str(error.value).splitlines()[1:]
  assert sorted(line.strip() for line in lines) == sorted([
      "config key 'meta.inner_steps' = 0 must be >= 1",
      "config key 'meta.algorithm' = 'mamll' must be one of ['maml', 'first_order', 'reptile']",
      "config key 'optim.outer_lr' = -0.001 must be > 0",
      "config key 'optim.outer_lr' = -0.001 must be in [0, 1]",
  ])


def test_tasks_must_divide_over_devices():
  rules = {'meta.tasks_per_batch': [configlib.multiple_of_device_count(4)]}
  config = get_config()
  config.meta.tasks_per_batch = 6
  with pytest.raises(configlib.ConfigError, match=r"'meta\.tasks_per_batch' = 6 must be a "
                                                  r'multiple of the device count \(4\)'):
    configlib.validate(config, get_config(), rules)
  config.meta.tasks_per_batch = 8
  configlib.validate(config, get_config(), rules)
  default = configlib.multiple_of_device_count()
  assert default.describe() == f'be a multiple of the device count ({jax.device_count()})'


def test_rule_for_a_key_the_reference_lacks_is_a_bug():
  with pytest.raises(KeyError, match='meta.inner_stepz'):
    configlib.validate(get_config(), get_config(), {'meta.inner_stepz': [configlib.positive()]})


def test_locked_config_rejects_override_of_unknown_key():
  config = get_config()
  config.lock()
  with pytest.raises(AttributeError, match='inner_stepz'):
    config.meta.inner_stepz = 3

"""Checking `ml_collections` run configs before anything is built or compiled.

A config file's `get_config()` is its own schema: `validate(config, reference, rules)` compares a
(possibly command-line-overridden) config with the unmodified `reference = get_config()` and
rejects, naming the dotted key:

  * unknown or misspelled keys (with the closest valid key, via difflib),
  * keys missing from the config,
  * values of another type than the reference's (an int is accepted for a float, a list for a
    tuple, anything where the reference holds None),
  * values breaking a rule: `rules` maps dotted keys to `Rule`s, e.g.

      RULES = {'meta.inner_steps': [at_least(1)],
               'meta.tasks_per_batch': [at_least(1), multiple_of_device_count()],
               'optim.outer_lr': [positive()],
               'meta.algorithm': [one_of('maml', 'first_order', 'reptile')]}

All problems are reported together in one `ConfigError`. A locked `ConfigDict` (what
`ml_collections.config_flags` returns) already refuses unknown keys in `--config.x=` overrides;
`validate` covers configs built or edited in Python and the value rules.
"""

import dataclasses
import difflib
from typing import Any, Callable, Mapping, Sequence

import ml_collections


class ConfigError(ValueError):
  """A config is not valid; the message lists every problem, one per line, by dotted key."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """`check(value) -> bool` must hold; `requirement` completes "<key> = <value> must ..." (a
  callable when it depends on what is only known at check time, such as the device count)."""
  check: Callable[[Any], bool]
  requirement: str | Callable[[], str]

  def describe(self) -> str:
    return self.requirement() if callable(self.requirement) else self.requirement


def positive() -> Rule:
  return Rule(lambda v: v > 0, 'be > 0')


def at_least(minimum) -> Rule:
  return Rule(lambda v: v >= minimum, f'be >= {minimum}')


def in_range(low, high) -> Rule:
  """`low <= value <= high`."""
  return Rule(lambda v: low <= v <= high, f'be in [{low}, {high}]')


def one_of(*choices) -> Rule:
  return Rule(lambda v: v in choices, f'be one of {list(choices)}')


def multiple_of_device_count(device_count: int | None = None) -> Rule:
  """`value % device_count == 0`: a task axis sharded evenly over all global devices.

  `device_count` defaults to `jax.device_count()` when the rule is checked, which starts the
  backend (on multi-process runs `validate` must come after `jax.distributed.initialize`) but
  compiles nothing. Building the rule touches no backend.
  """
  def count() -> int:
    if device_count is not None:
      return device_count
    import jax  # pylint: disable=g-import-not-at-top  (only this default needs a backend)
    return jax.device_count()
  return Rule(lambda v: v % count() == 0, lambda: f'be a multiple of the device count ({count()})')


def _is_section(value) -> bool:
  return isinstance(value, (Mapping, ml_collections.ConfigDict))


def _type_ok(value, expected) -> bool:
  if expected is None:
    return True
  if isinstance(expected, bool) or isinstance(value, bool):
    return isinstance(value, bool) and isinstance(expected, bool)
  if isinstance(expected, float):
    return isinstance(value, (int, float))
  if isinstance(expected, (list, tuple)):
    return isinstance(value, (list, tuple))
  return isinstance(value, type(expected))


def _compare(config, reference, prefix: str, problems: dict[str, str]) -> None:
  """Adds `{dotted key: message}` for unknown, missing and mistyped keys to `problems`."""
  config_items, reference_items = dict(config.items()), dict(reference.items())
  for key, value in config_items.items():
    name = prefix + key
    if key not in reference_items:
      candidates = [prefix + k for k in reference_items]
      close = difflib.get_close_matches(name, candidates, n=1)
      hint = f"; did you mean '{close[0]}'?" if close else f'; valid keys: {sorted(candidates)}'
      problems[name] = f"unknown config key '{name}'{hint}"
      continue
    expected = reference_items[key]
    if _is_section(expected):
      if _is_section(value):
        _compare(value, expected, name + '.', problems)
      else:
        problems[name] = f"config key '{name}' must be a section of settings, got {value!r}"
    elif not _type_ok(value, expected):
      problems[name] = (f"config key '{name}' = {value!r} has type {type(value).__name__}, "
                        f'expected {type(expected).__name__} (like the default {expected!r})')
  for key in reference_items:
    if key not in config_items:
      problems[prefix + key] = f"config key '{prefix + key}' is missing"


def _lookup(config, dotted_key: str):
  value = config
  for part in dotted_key.split('.'):
    value = value[part]
  return value


def validate(config, reference, rules: Mapping[str, Sequence[Rule]] = ()) -> None:
  """Checks `config` against `reference` (keys, types) and `rules` (values).

  Args:
    config: the run's `ConfigDict` (or nested mapping), after overrides.
    reference: the same experiment's unmodified `get_config()`: the schema.
    rules: dotted key -> rules its value must satisfy (checked when keys and types are right).

  Raises:
    ConfigError: listing every unknown, missing, mistyped or rule-breaking key.
    KeyError: a rule names a key that the reference does not have (a bug in the rules).
  """
  problems = {}
  _compare(config, reference, '', problems)
  for key, key_rules in dict(rules).items():
    try:
      _lookup(reference, key)
    except (KeyError, AttributeError) as e:
      raise KeyError(f'rule for {key!r}, which the reference config does not have') from e
    parts = key.split('.')
    if any('.'.join(parts[:i]) in problems for i in range(1, len(parts) + 1)):
      continue  # Already reported as missing or mistyped.
    value = _lookup(config, key)
    for rule in key_rules:
      if not rule.check(value):
        requirement = rule.describe()
        problems[key + '#' + requirement] = f"config key '{key}' = {value!r} must {requirement}"
  if problems:
    raise ConfigError('invalid config:\n  ' + '\n  '.join(problems.values()))

"""absl mains of the training programs: `metaiqa-meta-train`, `-finetune`, `-evaluate`, `-lodo`.

Each takes `--config=configs/NAME.py` (an ml_collections `get_config()` file; override any key
with `--config.KEY=VALUE`; unknown keys are refused by name), `--workdir=DIR` (everything the run
writes; running again on the same DIR resumes) and `--distributed` (call
`jax.distributed.initialize()` first: TPU pods, Slurm). The work is done by the function of the
same name in `metaiqa_jax.train`, which tests call directly.
"""

import sys
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from metaiqa_jax import checkpoints, configlib
from metaiqa_jax.io import ImageReadError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and reports.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False,
                                 'Call jax.distributed.initialize() (multi-host clusters).')

# Errors that are the user's input, not a bug: printed as one message, exit status 2.
USER_ERRORS = (configlib.ConfigError, checkpoints.WorkdirError,
               checkpoints.CheckpointMismatchError, ImageReadError, FileNotFoundError)


def _runner(name: str, program: Callable[[], Callable]) -> Callable[[], None]:
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if _CONFIG.value is None or not _WORKDIR.value:
      raise app.UsageError('--config and --workdir are required')
    config = _CONFIG.value
    if _DISTRIBUTED.value:
      config.distributed = True
    try:
      program()(config, _WORKDIR.value)
    except USER_ERRORS as e:
      print(f'{name}: error: {e}', file=sys.stderr)
      sys.exit(2)
  return lambda: app.run(main)


def _meta_train():
  from metaiqa_jax.train.meta_train import meta_train  # pylint: disable=g-import-not-at-top
  return meta_train


def _finetune():
  from metaiqa_jax.train.finetune import finetune  # pylint: disable=g-import-not-at-top
  return finetune


def _evaluate():
  from metaiqa_jax.train.evaluate import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate


def _lodo():
  from metaiqa_jax.train.lodo import lodo  # pylint: disable=g-import-not-at-top
  return lodo


meta_train = _runner('metaiqa-meta-train', _meta_train)
finetune = _runner('metaiqa-finetune', _finetune)
evaluate = _runner('metaiqa-evaluate', _evaluate)
lodo = _runner('metaiqa-lodo', _lodo)

"""absl mains of the programs: `metaiqa-meta-train`, `-finetune`, `-evaluate`, `-lodo`, `-demo`,
`-transfer`.

Each takes `--config=configs/NAME.py` (an ml_collections `get_config()` file, default: the
program's own, see `_runner`; override any key with `--config.KEY=VALUE`; unknown keys are
refused by name), `--workdir=DIR` (everything the run writes; running again on the same DIR
resumes) and, for multi-process runs, `--distributed` (`jax.distributed.initialize()` with the
cluster detected from the environment: TPU pods, Slurm) or `--coordinator_address`,
`--num_processes` and `--process_id` (the cluster named: `launch/local_cluster.sh`). The work is
done by the function of the same name in `metaiqa_jax.train`, which tests call directly.

Compiled XLA programs are kept on disk (`compile_cache`; `--compilation_cache=DIR|off`, default
`~/.cache/metaiqa_jax/xla`), so running a program again skips most of its compilation.

A run holds its workdir (`workdir_lock`: `workdir/run.lock` names the host, PID, start time and
command) from before it compiles until it ends, however it ends; a second run on the same workdir
stops at once, naming the holder. A lock whose process is gone is taken over with a warning.

Exit status: 0 done; 2 a user error, printed as one line (bad config or arguments, unreadable
input, workdir not writable or held by another run: `USER_ERRORS`); 74 (EX_IOERR,
`STORAGE_ERROR_EXIT_STATUS`) a checkpoint, log or report could not be written (no space left,
quota, permission lost, read-only file system), printed as one line naming the path, the step and
the last complete checkpoint, from which the same command resumes; 143 SIGTERM (a training loop
first saves the step in flight); 1 anything else (a bug: traceback).
"""

import importlib.util
import logging
import os
import signal
import sys
import traceback
from typing import Callable

from absl import app, flags
import jax
from ml_collections import config_flags

from metaiqa_jax import (checkpoints, compile_cache, configlib, distributed, storage, weights,
                         workdir_lock)
from metaiqa_jax.cli import usage
from metaiqa_jax.data.registry import DatasetError
from metaiqa_jax.distributed import DistributedInitError
from metaiqa_jax.images import ImageReadError
from metaiqa_jax.train.loop import NonFiniteLossError, Preempted

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and reports.')
flags.DEFINE_bool('smoke', False, 'metaiqa-demo and metaiqa-transfer without --config: the '
                  'toy-size run of their default config (seconds; its numbers mean nothing).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-process run, the cluster detected from the environment '
    '(jax.distributed.initialize(): Cloud TPU VMs, Slurm, ...).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Multi-process run on a cluster JAX does not detect: host:port '
    'of process 0, with --num_processes and --process_id (see launch/local_cluster.sh).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes of the run.',
                                      lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.',
                                   lower_bound=0)
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 300, 'Seconds to wait for the coordinator and every process to join '
    'a multi-process run before giving up with an error.', lower_bound=1)
_CLUSTER_FLAGS = ('coordinator_address', 'num_processes', 'process_id')
_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None, 'Folder of the persistent XLA compilation cache, so a second run '
    'starts without recompiling; "off" turns it off. Default: $JAX_COMPILATION_CACHE_DIR, else '
    '~/.cache/metaiqa_jax/xla (under $XDG_CACHE_HOME when set).')

# Exit status after a graceful stop on SIGTERM (128 + 15, as if killed by it; schedulers requeue).
PREEMPTED_EXIT_STATUS = 128 + signal.SIGTERM
# Exit status after a failed write to the workdir (`storage.StorageError`): sysexits' EX_IOERR.
STORAGE_ERROR_EXIT_STATUS = os.EX_IOERR

# Errors that are the user's input, not a bug: printed as one message, exit status 2. A NaN
# loss is one too: the data or the settings (learning rates) make training diverge.
USER_ERRORS = (configlib.ConfigError, checkpoints.WorkdirError,
               checkpoints.CheckpointMismatchError, ImageReadError, FileNotFoundError,
               DatasetError, NonFiniteLossError, DistributedInitError, weights.UnsafePickleError,
               weights.TorchFileError, weights.WeightsFormatError)

_COMMON_HELP = '''
Every setting is a key of the config file: override one with --config.KEY=VALUE (an unknown key
is refused by name). Everything the run writes goes to --workdir; running the same command again
resumes from the last complete checkpoint. Exit status: 0 done, 2 a user error (one line), 74 a
checkpoint or report could not be written, 143 stopped by SIGTERM (resumable), 1 a bug.
'''


class _QuietDependencies(logging.Filter):
  """Drops INFO/DEBUG records logged from orbax (one per checkpoint file read or written), and
  the tracebacks of a failed write that orbax's and asyncio's threads log: the run stops with
  one `StorageError` message instead."""

  def filter(self, record):
    if record.exc_info and storage.fault_reason(record.exc_info[1]):
      return False
    return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


def _quiet_closed_loops(previous: Callable) -> Callable:
  """A `sys.unraisablehook` that drops the 'Event loop is closed' errors of tensorstore writes
  completing after orbax gave up a failed save (one per file), and passes on everything else."""
  def hook(unraisable):
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'):
      previous(unraisable)
  return hook


def _stop_on_sigterm(signum, frame):
  """SIGTERM outside a training loop (which stops gracefully itself): unwind, releasing the
  workdir."""
  del signum, frame
  raise Preempted('SIGTERM received: stopped; run the same command again to resume from the '
                  'last complete checkpoint')


def _run_holding_workdir(program: Callable, config, workdir: str, cluster: list,
                         timeout_s: int) -> None:
  """Runs `program` holding the workdir lock, taken once the config is known to be valid.

  A multi-process run joins its processes first (`cluster`: coordinator address, process count,
  process id, all None for a detected cluster): the config check counts global devices, and the
  lock needs the process index.
  """
  from metaiqa_jax.train import defaults  # pylint: disable=g-import-not-at-top
  if config.distributed:
    distributed.initialize_distributed(*cluster, timeout_s=timeout_s)
  defaults.validate(config)  # As the program does: a bad config creates no workdir.
  with workdir_lock.hold(workdir):
    program(config, workdir)


def _report_errors(name: str, run: Callable[[], None]) -> None:
  """Calls `run()`; an error that is not a bug ends the process with one line on stderr,
  `NAME: error: MESSAGE`, and the exit status of the module docstring (a bug: traceback)."""
  try:
    run()
  except USER_ERRORS as e:
    print(f'{name}: error: {e}', file=sys.stderr)
    sys.exit(2)
  except Preempted as e:
    print(f'{name}: {e}', file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_STATUS)
  except storage.StorageError as e:
    print(f'{name}: error: {e}', file=sys.stderr)
    sys.exit(STORAGE_ERROR_EXIT_STATUS)
  except OSError as e:  # A report, plot or table not written: there is no step to name.
    reason = storage.fault_reason(e)
    if reason is None:
      raise
    print(f'{name}: error: could not write {e.filename or "to the workdir"}: {reason}. Make '
          f'room or fix the file system, then run the same command again: it resumes from '
          f'the complete checkpoints', file=sys.stderr)
    sys.exit(STORAGE_ERROR_EXIT_STATUS)


def exit_on_errors(name: str, run: Callable[[], None]) -> None:
  """`_report_errors(name, run)`; in a multi-process run, a process that ends with an error
  leaves at once (`os._exit`) instead of waiting for the others at JAX's shutdown barrier.

  The others may be waiting for it in a collective (a batch's gradients, a gathered score), and
  would wait for ever while it waits for them; once it is gone their collective fails and they
  end too, so a corrupt image read by one process stops the whole run with its message.
  """
  try:
    _report_errors(name, run)
  except BaseException as e:  # pylint: disable=broad-except
    if not jax.distributed.is_initialized():
      raise
    if isinstance(e, SystemExit):
      code = e.code if isinstance(e.code, int) else 1
    else:
      traceback.print_exc()
      code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _module_file(module: str) -> str:
  return importlib.util.find_spec(module).origin


def _runner(name: str, program: Callable[[], Callable], config_module: str, description: str,
            smoke: bool = False) -> Callable[[], None]:
  """The console entry point of a program.

  `--config` defaults to `get_config()` of `config_module` (with its argument 'smoke' when
  `smoke` and --smoke are given), so `--config.KEY=VALUE` overrides work without `--config`.
  `description` (what the program does, an example command) heads `--help`.
  """
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not _WORKDIR.value:
      raise app.UsageError('--workdir is required')
    for handler in logging.getLogger().handlers + logging.getLogger('absl').handlers:
      handler.addFilter(_QuietDependencies())
    sys.unraisablehook = _quiet_closed_loops(sys.unraisablehook)
    config = flags.FLAGS.config
    cluster = [flags.FLAGS[name].value for name in _CLUSTER_FLAGS]
    if any(value is not None for value in cluster):
      if any(value is None for value in cluster):
        raise app.UsageError('--coordinator_address, --num_processes and --process_id go '
                             'together (or --distributed alone, for a detected cluster)')
      if not _PROCESS_ID.value < _NUM_PROCESSES.value:
        raise app.UsageError(f'--process_id {_PROCESS_ID.value} must be below --num_processes '
                             f'{_NUM_PROCESSES.value}')
    if _DISTRIBUTED.value or cluster[0] is not None:
      config.distributed = True
    compile_cache.enable(compile_cache.default_dir() if _COMPILATION_CACHE.value is None
                         else _COMPILATION_CACHE.value)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    exit_on_errors(name, lambda: _run_holding_workdir(program(), config, _WORKDIR.value,
                                                      cluster, _DISTRIBUTED_TIMEOUT.value))

  def entry():
    default = _module_file(config_module)
    if smoke and any(arg in ('--smoke', '--smoke=true', '--smoke=True') for arg in sys.argv):
      default += ':smoke'
    config_flags.DEFINE_config_file(
        'config', default, f'Experiment config file (configs/*.py); default: {config_module}.')
    usage.run(main, description=f'\n{name} --workdir=DIR [--config=CONFIG.py] [--config.KEY=VALUE ...]'
              f'{" [--smoke]" if smoke else ""}\n\n{description.strip()}\n{_COMMON_HELP}',
              flag_names=['config', 'workdir', 'distributed', *_CLUSTER_FLAGS,
                          'distributed_timeout', 'compilation_cache'] +
              (['smoke'] if smoke else []))
  return entry


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


def _demo():
  from metaiqa_jax.train.demo import demo  # pylint: disable=g-import-not-at-top
  return demo


def _transfer():
  from metaiqa_jax.train.transfer import transfer  # pylint: disable=g-import-not-at-top
  return transfer


_DEFAULTS = 'metaiqa_jax.train.defaults'
meta_train = _runner('metaiqa-meta-train', _meta_train, _DEFAULTS, """
Meta-trains the MetaIQA quality model (Zhu et al., CVPR 2020). Each meta-step adapts the model to
a batch of distortion-type tasks on their support images (inner loop) and updates the shared
initialisation on their query images (outer loop). The data are config.data.sources with their
native-layout config.data.roots (TID2013, KADID-10k, or the built-in synthetic bank).

Example:
  metaiqa-meta-train --config=configs/meta_tid_kadid.py --workdir=runs/meta \\
    --config.data.roots='("/data/tid2013", "/data/kadid10k")'
""")
finetune = _runner('metaiqa-finetune', _finetune, _DEFAULTS, """
Fine-tunes a model on a dataset of authentic distortions (LIVE Challenge, KonIQ-10k, CID2013, any
CSV) over N train/val/test splits: the epoch is chosen on val; test SROCC, PLCC, KRCC and RMSE
are reported per split and as mean, std and median (report.json). config.model.init is a
checkpoint directory or a PyTorch file.

Example:
  metaiqa-finetune --config=configs/finetune_livec.py --workdir=runs/ft_livec \\
    --config.finetune.root=/data/ChallengeDB_release --config.model.init=runs/meta
""")
evaluate = _runner('metaiqa-evaluate', _evaluate, _DEFAULTS, """
Scores a dataset with trained weights (config.model.init: a checkpoint directory, which brings
its own model and input settings, or a PyTorch file): every image, or the test parts of
config.finetune.split_file. Writes report.json, predictions.csv and scatter.png.

Example:
  metaiqa-evaluate --workdir=runs/eval --config.model.init=runs/ft_livec/split_0 \\
    --config.finetune.source=livec --config.finetune.root=/data/ChallengeDB_release
""")
lodo = _runner('metaiqa-lodo', _lodo, _DEFAULTS, """
Leave-one-distortion-out: for each held-out distortion type, meta-trains on the other types,
then reports SROCC on the held-out type zero-shot and after adapting to k labelled images of it
(report.json, SROCC-vs-steps and SROCC-vs-shots plots).

Example:
  metaiqa-lodo --config=configs/lodo_kadid10k.py --workdir=runs/lodo_kadid \\
    --config.data.roots='("/data/kadid10k",)'
""")
demo = _runner('metaiqa-demo', _demo, 'metaiqa_jax.configs.demo', """
The embedded demo, on no data but the photos shipped with the package: meta-learned, multitask
and scratch initialisations of the same network are trained on a synthetic distortion bank
(labels: KADID-10k's human mean per distortion type and level), then adapted to distortion
types and photos they never saw; SROCC tables in report.json. 7 to 10 minutes on 2 CPU cores;
--smoke runs a toy size in seconds.

Example:
  metaiqa-demo --workdir=/tmp/metaiqa-demo
""", smoke=True)
transfer = _runner('metaiqa-transfer', _transfer, 'metaiqa_jax.configs.transfer_livec', """
Does synthetic pretraining help on distortions rated by people? Pretrains meta and multitask
initialisations on the synthetic bank, fine-tunes them and a scratch model on seeded splits of a
human-rated dataset (LIVE Challenge by default), scores the sharpness baseline on the same test
parts, and writes the final models to workdir/final/<init>. --smoke runs a toy size in seconds.

Example:
  metaiqa-transfer --workdir=/tmp/metaiqa-transfer \\
    --config.finetune.root=/data/ChallengeDB_release
""", smoke=True)

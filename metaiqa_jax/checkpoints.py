"""Run checkpoints on orbax-checkpoint: keep the latest N and the best k, resume, restore weights.

On-disk layout (`workdir/checkpoints/`, one orbax `CheckpointManager`):

  checkpoints/<step>/state/    the whole train-state pytree (orbax PyTree, OCDBT). Its top level
                               must hold `params` and `batch_stats` (fields of a flax.struct
                               dataclass or dict keys); everything else (`step`, `opt_state`,
                               `inner_lr`, ...) sits beside them.
  checkpoints/<step>/meta/     JSON: {'format': 1, 'step', 'model_config' (ModelConfig.to_dict()),
                               'inputs' (preprocess.InputSpec.to_dict(): how the model was fed,
                               absent in older checkpoints), 'pixels' (the RGB normalisation:
                               [0, 1] pixels minus 'mean', divided by 'std'), 'written_by'
                               (the training function, command line, whole config and package
                               version that wrote it), 'metrics', 'extra' (data-iterator
                               position, seeds, ...)}.

A checkpoint therefore describes itself: `restore_variables` rebuilds the model,
`stored_inputs` tells how to turn images into its inputs, with no other settings, and
`describe` returns everything stored about it.
  checkpoints/<step>/metrics/  orbax's own copy of the metrics, used to rank checkpoints.

`params` and `batch_stats` are restored on their own by an orbax partial restore, so inference and
fine-tuning (`restore_variables`) need neither the optimiser nor the train-state class.

Retention: one manager with orbax's `AnyPreservationPolicy([LatestN(keep_latest),
BestN(keep_best)])`: a step survives while it is among the newest `keep_latest` OR the best
`keep_best` by `best_metric` (higher is better; NaN ranks last). One directory rather than two
managers (`latest/`, `best/`) means a step that is both latest and best is stored once, saving
is one atomic write, and resuming and model selection read the same list of steps.

Atomicity: orbax writes a step into `<step>.orbax-checkpoint-tmp-*` and renames it when complete,
so a process killed mid-save leaves the previous steps untouched and only a tmp directory, which
is ignored when listing steps and deleted when the next `Checkpointer` opens the directory.
Retiring a step is atomic too: orbax renames it into `checkpoints/retired/<step>` (deleting it in
place file by file, as orbax does by default, left a half-deleted step directory when the process
was killed meanwhile), and the retired directory is emptied when a `Checkpointer` opens, before
each save and at `close`, so it holds at most the steps retired by the last save. A step
that is complete on disk but unreadable (a truncated file, missing metadata) is skipped by
`restore_latest` with a warning naming it and moved to `workdir/corrupt_checkpoints/`, so the
resumed run can write that step again.

Storage faults: a save that fails for lack of space, permission or a writable file system (raised
by orbax at the save, or from its background thread at the next save, wait or close) stops the
manager's threads and raises `storage.StorageError` naming the step and the last complete one.
Before each save a warning tells when the file system has less room than the last checkpoint took.
"""

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from metaiqa_jax import storage
from metaiqa_jax.models import ModelConfig, init_variables
from metaiqa_jax.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputSpec

PyTree = Any
FORMAT_VERSION = 1
# How images become model inputs' pixel values (stored with every step for other codebases).
PIXEL_NORMALISATION = {'range': [0.0, 1.0], 'mean': [round(float(v), 6) for v in IMAGENET_MEAN],
                       'std': [round(float(v), 6) for v in IMAGENET_STD]}
CHECKPOINTS_DIRNAME = 'checkpoints'
CORRUPT_DIRNAME = 'corrupt_checkpoints'
RETIRED_DIRNAME = 'retired'  # Inside CHECKPOINTS_DIRNAME: steps dropped by retention, to delete.
VARIABLE_COLLECTIONS = ('params', 'batch_stats')

logger = logging.getLogger(__name__)


class WorkdirError(OSError):
  """The run's working directory cannot be created or written."""


class CheckpointMismatchError(ValueError):
  """A readable checkpoint holds arrays of other shapes than the model or state expected."""


def ensure_writable(workdir) -> epath.Path:
  """Creates `workdir` if needed and proves it writable by writing and deleting a probe file.

  Call it before any compilation so a bad `--workdir` fails at start, not at the first save.

  Raises:
    WorkdirError: naming the directory and the operating system's reason.
  """
  path = epath.Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
      raise NotADirectoryError(f'{path} exists and is not a directory')
    with tempfile.NamedTemporaryFile(dir=os.fspath(path), prefix='.write_probe'):
      pass
  except OSError as e:
    raise WorkdirError(f'workdir {os.fspath(path)!r} is not a writable directory: '
                       f'{e.strerror or e}') from e
  return path


def last_complete_step(workdir) -> Optional[int]:
  """The newest step fully written to `workdir/checkpoints/` (orbax's tmp dirs excluded), or
  None."""
  directory = epath.Path(workdir) / CHECKPOINTS_DIRNAME
  if not directory.is_dir():
    return None
  return max((int(d.name) for d in directory.iterdir() if d.name.isdigit()), default=None)


def _disk_size(path: epath.Path) -> int:
  """Bytes in the files under `path`."""
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(os.fspath(path)) for name in names)


def _join_orbax_threads(timeout_s: float = 60.0) -> None:
  """Waits (at most `timeout_s`) for the writes orbax still runs after one of them failed, so
  they neither race the next `Checkpointer` nor report at exit."""
  deadline = time.monotonic() + timeout_s
  for thread in threading.enumerate():
    if type(thread).__module__.startswith('orbax.') and thread is not threading.current_thread():
      thread.join(max(0.0, deadline - time.monotonic()))


def _key_name(key) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _shapes_by_path(tree: PyTree) -> dict[str, tuple[int, ...]]:
  """`{'params/backbone/conv1/kernel': shape}` for every leaf (arrays, shape structs, metadata)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(_key_name(k) for k in path): tuple(getattr(leaf, 'shape', ()))
          for path, leaf in leaves}


def _first_mismatch(expected: dict, stored: dict) -> Optional[str]:
  """Describes the first key path (in `expected` order) whose shape differs, or None."""
  for path, shape in expected.items():
    if path not in stored:
      return f'{path}: expected shape {shape}, missing from the checkpoint'
    if stored[path] != shape:
      return f'{path}: checkpoint has shape {stored[path]}, expected {shape}'
  for path, shape in stored.items():
    if path not in expected:
      return f'{path}: checkpoint has an entry of shape {shape} that the model does not'
  return None


def _stored_tree_metadata(state_dir: epath.Path) -> PyTree:
  """The saved tree of array metadata (shapes, dtypes) without reading the arrays.

  Raises whatever orbax/tensorstore raise on unreadable files (ValueError, OSError, ...).
  """
  handler = ocp.PyTreeCheckpointHandler()
  try:
    return handler.metadata(state_dir).tree
  finally:
    handler.close()


def _restore_args(abstract: PyTree) -> PyTree:
  """Restore args for `abstract` (arrays or ShapeDtypeStructs), on one device if unsharded."""
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def one(leaf):
    if not hasattr(leaf, 'shape'):
      return ocp.RestoreArgs()
    sharding = getattr(leaf, 'sharding', None) or default
    return ocp.ArrayRestoreArgs(sharding=sharding, global_shape=leaf.shape, dtype=leaf.dtype)
  return jax.tree.map(one, abstract)


def _read_meta(step_dir: epath.Path, step: Optional[int]) -> dict:
  """The step's JSON metadata; `step` (if given) must match the one recorded in it."""
  meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(step_dir / 'meta')
  if not isinstance(meta, dict) or 'step' not in meta or step not in (None, meta['step']):
    raise ValueError(f'metadata in {step_dir / "meta"} is missing or not for step {step}')
  return meta


def _metric_value(metrics: Optional[Mapping], name: str) -> float:
  value = float((metrics or {}).get(name, float('nan')))
  return value if np.isfinite(value) else float('-inf')


class StepDirectory:
  """The housekeeping of a run's `checkpoints/` around orbax's writes: emptying the retired
  steps, warning before a save the file system cannot hold, and moving unreadable steps aside to
  `workdir/corrupt_checkpoints/` (the file operations on the first process only).

  `Checkpointer` writes and restores the steps; this class keeps the directory fit for it.
  """

  def __init__(self, workdir: epath.Path):
    self.workdir = workdir
    self.directory = workdir / CHECKPOINTS_DIRNAME

  def delete_retired(self) -> None:
    """Deletes the steps retention moved to `checkpoints/retired/` (primary process only; a
    failure is a warning: the run goes on, the files stay)."""
    retired = self.directory / RETIRED_DIRNAME
    if jax.process_index() != 0 or not retired.exists():
      return
    try:
      retired.rmtree()
    except OSError as e:
      logger.warning('could not delete the retired checkpoints in %s: %s', retired, e)

  def warn_if_short_of_space(self, step: int) -> None:
    """Warns when the file system has less room left than the last complete checkpoint takes."""
    last = last_complete_step(self.workdir) if jax.process_index() == 0 else None
    if last is None:
      return
    needed = _disk_size(self.directory / str(last))
    free = shutil.disk_usage(os.fspath(self.directory)).free
    if free < needed:
      logger.warning('%s has %.3g MB free, less than the %.3g MB of checkpoint step %d: saving '
                     'step %d will probably fail; make room now', self.directory, free / 2**20,
                     needed / 2**20, last, step)

  def set_aside_unreadable_metrics(self) -> None:
    """Moves away steps whose metrics JSON is unparsable: orbax would fail to open the dir."""
    for step_dir in self.directory.iterdir() if self.directory.is_dir() else ():
      metrics_file = step_dir / 'metrics' / 'metrics'
      if step_dir.name.isdigit() and metrics_file.exists():
        try:
          json.loads(metrics_file.read_text())
        except (OSError, ValueError) as e:
          self.move_aside(int(step_dir.name), e)

  def move_aside(self, step: int, error: Exception) -> None:
    """Moves step `step` (unreadable: `error`) to `workdir/corrupt_checkpoints/<step>-<ns>`,
    with a warning; every process waits until it is done."""
    step_dir = self.directory / str(step)
    target = self.workdir / CORRUPT_DIRNAME / f'{step}-{time.time_ns()}'
    logger.warning('checkpoint %s is unreadable (%s: %s); falling back to the previous step '
                   'and moving it to %s', step_dir, type(error).__name__,
                   str(error).splitlines()[0][:300] if str(error) else '', target)
    if jax.process_index() == 0:
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(os.fspath(step_dir), os.fspath(target))
    ocp.multihost.sync_global_processes(f'metaiqa_move_aside_{step}')


class Checkpointer:
  """Saves and resumes one run's train state in `workdir/checkpoints/`.

  All processes of a multi-host run must construct it and call `save`/`restore_latest` together
  (orbax coordinates the writes; only the primary process writes the metadata).

  Args:
    workdir: the run's working directory (created if missing).
    model_config: the `ModelConfig` (or its dict) stored with every step, so `restore_variables`
      can rebuild the model.
    inputs: the `preprocess.InputSpec` the model is trained with, stored with every step
      (`stored_inputs` reads it back).
    written_by: JSON-serialisable provenance stored with every step (which program, command and
      config wrote it: `train.reporting.provenance`).
    keep_latest: number of newest steps kept.
    keep_best: number of best steps kept by `best_metric` (0: keep by recency only).
    best_metric: key of `metrics` ranking checkpoints, higher is better.
    async_save: write in a background thread (call `wait_until_finished` before reading).
  """

  def __init__(self, workdir, *, model_config: ModelConfig | Mapping | None = None,
               inputs: InputSpec | None = None, written_by: Mapping | None = None,
               keep_latest: int = 2, keep_best: int = 1, best_metric: str = 'val_srocc',
               async_save: bool = True):
    if keep_latest < 1:
      raise ValueError(f'keep_latest must be >= 1 to be able to resume, got {keep_latest}')
    if keep_best < 0:
      raise ValueError(f'keep_best must be >= 0, got {keep_best}')
    self.workdir = ensure_writable(workdir)
    self._steps = StepDirectory(self.workdir)
    self.directory = self._steps.directory
    self.best_metric = best_metric
    if isinstance(model_config, ModelConfig):
      model_config = model_config.to_dict()
    self.model_config = dict(model_config) if model_config is not None else None
    self.inputs = inputs.to_dict() if inputs is not None else None
    self.written_by = dict(written_by) if written_by is not None else None
    self._steps.set_aside_unreadable_metrics()
    self._steps.delete_retired()
    metric_fn = lambda metrics: _metric_value(metrics, best_metric)
    policies = [ocp.checkpoint_managers.LatestN(keep_latest)]
    if keep_best:
      policies.append(ocp.checkpoint_managers.BestN(
          get_metric_fn=metric_fn, n=keep_best, keep_checkpoints_without_metrics=False))
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            create=True, cleanup_tmp_directories=True, best_fn=metric_fn, best_mode='max',
            enable_async_checkpointing=async_save, todelete_subdir=RETIRED_DIRNAME,
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies)))
    self._pending = None  # The step of the last save, asynchronous until waited for.
    self._closed = False

  def all_steps(self) -> list[int]:
    """Steps on disk, increasing."""
    return sorted(self._manager.all_steps())

  def last_complete_step(self) -> Optional[int]:
    """The newest step complete on disk once the pending save has ended (a failed one is not)."""
    if not self._closed:
      with contextlib.suppress(storage.StorageError):
        self.wait_until_finished()
    return last_complete_step(self.workdir)

  def best_step(self) -> Optional[int]:
    """Step with the highest `best_metric` among steps saved with metrics, else None."""
    ranked = [(_metric_value(self._manager.metrics(s), self.best_metric), s)
              for s in self.all_steps()]
    ranked = [(value, s) for value, s in ranked if value > float('-inf')]
    return max(ranked)[1] if ranked else None

  def save(self, step: int, state: PyTree, *, metrics: Optional[Mapping[str, float]] = None,
           extra_json: Optional[Mapping[str, Any]] = None) -> None:
    """Saves `state` as step `step` (asynchronously unless `async_save=False`).

    Args:
      step: the train step the state is at (non-negative, increasing across saves).
      state: pytree with top-level `params` and `batch_stats` entries plus anything else.
      metrics: scalar metrics of this state; must include `best_metric` to be ranked as best.
      extra_json: JSON-serialisable resume information (data-iterator position, seeds, ...).

    Raises:
      storage.StorageError: this save, or the previous asynchronous one, could not be written.
    """
    missing = [name for name in VARIABLE_COLLECTIONS
               if not (name in state if isinstance(state, Mapping) else hasattr(state, name))]
    if missing:
      raise ValueError(f'state {type(state).__name__} has no top-level {missing}')
    metrics = {k: float(v) for k, v in metrics.items()} if metrics is not None else None
    meta = {'format': FORMAT_VERSION, 'step': int(step), 'model_config': self.model_config,
            'inputs': self.inputs, 'pixels': PIXEL_NORMALISATION,
            'written_by': self.written_by, 'metrics': metrics,
            'extra': dict(extra_json) if extra_json is not None else None}
    self.wait_until_finished()  # As orbax's save would, but a failure is named by its own step.
    self._steps.delete_retired()
    self._steps.warn_if_short_of_space(step)
    self._pending = int(step)
    with self._writing():
      self._manager.save(int(step), metrics=metrics, force=True,
                         args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                                 meta=ocp.args.JsonSave(meta)))

  @contextlib.contextmanager
  def _writing(self):
    """Turns a storage fault in the block (writing step `self._pending`) into `StorageError`,
    after stopping the manager so that its threads report nothing more."""
    try:
      yield
    except Exception as e:
      reason = storage.fault_reason(e)
      if reason is None:
        raise
      self._closed = True
      with contextlib.suppress(Exception):  # The same fault again, if anything.
        self._manager.close()
      _join_orbax_threads()
      raise storage.StorageError(storage.stopped_message(
          f'checkpoint step {self._pending} in {self.directory}', reason,
          last_complete_step(self.workdir))) from e

  def restore_latest(self, abstract_state: PyTree) -> Optional[tuple[int, PyTree, dict]]:
    """Restores the newest readable step into the structure of `abstract_state`.

    Args:
      abstract_state: the train state (arrays or `jax.ShapeDtypeStruct`s, e.g. from
        `jax.eval_shape`), giving structure, shapes, dtypes and shardings.

    Returns:
      `(step, state, meta)` or None when no step is readable. Unreadable steps are logged as
      warnings and moved to `workdir/corrupt_checkpoints/`.

    Raises:
      CheckpointMismatchError: a readable checkpoint whose shapes differ from `abstract_state`,
        naming the first mismatched key path (another model, not a corrupt file: nothing moved).
    """
    self.wait_until_finished()
    expected = _shapes_by_path(abstract_state)
    for step in reversed(self.all_steps()):
      step_dir = self.directory / str(step)
      try:
        stored = _shapes_by_path(_stored_tree_metadata(step_dir / 'state'))
      except Exception as e:  # pylint: disable=broad-except  (any read failure == corrupt)
        self._quarantine(step, e)
        continue
      mismatch = _first_mismatch(expected, stored)
      if mismatch:
        raise CheckpointMismatchError(
            f'checkpoint {step_dir} does not fit the train state: {mismatch}')
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(abstract_state,
                                         restore_args=_restore_args(abstract_state))))
        meta = _read_meta(step_dir, step)
      except Exception as e:  # pylint: disable=broad-except
        self._quarantine(step, e)
        continue
      return step, restored.state, meta
    return None

  def _quarantine(self, step: int, error: Exception) -> None:
    self._steps.move_aside(step, error)
    self._manager.reload()

  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are on disk.

    Raises:
      storage.StorageError: the pending save could not be written.
    """
    with self._writing():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager's threads (once; later calls do nothing).

    Raises:
      storage.StorageError: the pending save could not be written.
    """
    if self._closed:
      return
    self._closed = True
    with self._writing():
      self._manager.close()
    self._steps.delete_retired()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _read_metrics(step_dir: epath.Path) -> Optional[dict]:
  """The step's metrics as orbax stored them, or None if absent or unreadable."""
  try:
    return json.loads((step_dir / 'metrics' / 'metrics').read_text())
  except (OSError, ValueError):
    return None


def _candidate_steps(checkpoint_dir: epath.Path, best_metric: str) -> list[int]:
  """Committed steps of `checkpoint_dir` (orbax's tmp dirs excluded), best first, then newest."""
  steps = sorted((int(d.name) for d in checkpoint_dir.iterdir() if d.name.isdigit()),
                 reverse=True)
  scored = sorted(((_metric_value(_read_metrics(checkpoint_dir / str(s)), best_metric), s)
                   for s in steps), reverse=True)
  best = [s for value, s in scored if value > float('-inf')]
  return best + [s for s in steps if s not in best]


def _restore_step_variables(step_dir: epath.Path, step: Optional[int],
                            model_config: Optional[ModelConfig]) -> tuple[ModelConfig, dict]:
  stored_config = _read_meta(step_dir, step).get('model_config')
  if model_config is None:
    if not stored_config:
      raise ValueError(f'checkpoint {step_dir} stores no model_config; pass model_config=')
    model_config = ModelConfig(**{**stored_config,
                                  'head_features': tuple(stored_config['head_features'])})
  model = model_config.create()
  abstract = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), image_size=32))
  stored = {path: shape
            for path, shape in _shapes_by_path(_stored_tree_metadata(step_dir / 'state')).items()
            if path.split('/')[0] in VARIABLE_COLLECTIONS}
  mismatch = _first_mismatch(_shapes_by_path(abstract), stored)
  if mismatch:
    raise CheckpointMismatchError(
        f'checkpoint {step_dir} does not fit model {model_config}: {mismatch}')
  variables = ocp.PyTreeCheckpointer().restore(
      step_dir / 'state', args=ocp.args.PyTreeRestore(
          item=abstract, restore_args=_restore_args(abstract), partial_restore=True))
  return model_config, {name: variables[name] for name in VARIABLE_COLLECTIONS}


def restore_variables(path, model_config: Optional[ModelConfig] = None, *,
                      best_metric: str = 'val_srocc') -> tuple[ModelConfig, dict]:
  """Loads `{'params', 'batch_stats'}` of a MetaIQA model for inference or fine-tuning.

  Args:
    path: a run workdir, its `checkpoints/` directory, or one step directory.
    model_config: the model the caller expects; default: the one stored in the checkpoint.
    best_metric: metric that picks the best step (higher is better); without any metrics the
      newest step is used. An unreadable step is skipped with a warning.

  Returns:
    `(model_config, variables)` with float32 `jax.Array` leaves.

  Raises:
    FileNotFoundError: nothing readable at `path`.
    CheckpointMismatchError: the stored arrays do not fit `model_config` (another architecture
      or width), naming the first mismatched key path and both shapes.
  """
  path = epath.Path(path)
  if (path / 'state').is_dir():
    return _restore_step_variables(path, None, model_config)
  checkpoint_dir = path / CHECKPOINTS_DIRNAME if (path / CHECKPOINTS_DIRNAME).is_dir() else path
  if not checkpoint_dir.is_dir():
    raise FileNotFoundError(f'no checkpoint directory at {os.fspath(path)!r}')
  failures = []
  for step in _candidate_steps(checkpoint_dir, best_metric):
    step_dir = checkpoint_dir / str(step)
    try:
      return _restore_step_variables(step_dir, step, model_config)
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (unreadable files: try the next)
      failures.append(f'{step_dir}: {type(e).__name__}: {str(e).splitlines()[0][:300]}')
    logger.warning('skipping unreadable checkpoint %s', failures[-1])
  raise FileNotFoundError(f'no readable checkpoint under {os.fspath(checkpoint_dir)!r}'
                          + (': ' + '; '.join(failures) if failures else ''))


def describe(path, *, best_metric: str = 'val_srocc') -> dict:
  """Everything stored about the checkpoint at `path`: its metadata JSON (see the module
  docstring: `step`, `model_config`, `inputs`, `pixels`, `written_by`, `metrics`, `extra`; older
  checkpoints lack some keys).

  `path` is what `restore_variables` takes; the step is chosen the same way.

  Raises:
    FileNotFoundError: no checkpoint metadata is readable at `path`.
  """
  path = epath.Path(path)
  if (path / 'state').is_dir():
    candidates = [path]
  else:
    checkpoint_dir = path / CHECKPOINTS_DIRNAME if (path / CHECKPOINTS_DIRNAME).is_dir() else path
    if not checkpoint_dir.is_dir():
      raise FileNotFoundError(f'no checkpoint directory at {os.fspath(path)!r}')
    candidates = [checkpoint_dir / str(s) for s in _candidate_steps(checkpoint_dir, best_metric)]
  for step_dir in candidates:
    try:
      return _read_meta(step_dir, None)
    except Exception:  # pylint: disable=broad-except  (unreadable: as restore_variables, skip)
      continue
  raise FileNotFoundError(f'no readable checkpoint metadata under {os.fspath(path)!r}')


def stored_inputs(path, *, best_metric: str = 'val_srocc') -> Optional[InputSpec]:
  """How the checkpoint at `path` expects images to be fed (`preprocess.InputSpec`).

  `path` is what `restore_variables` takes; the step is chosen the same way. None when the
  checkpoint predates stored input specs (then the caller's settings apply).

  Raises:
    FileNotFoundError: no checkpoint metadata is readable at `path`.
  """
  inputs = describe(path, best_metric=best_metric).get('inputs')
  return InputSpec.from_dict(inputs) if inputs else None

"""What a run writes for people: metric logs, progress bars, report.json, plots, tables.

Files under the run's workdir:
  metrics.jsonl   one JSON object per line: {"step": int, "split": str, "wall_time": float,
                  "metrics": {name: float or null}} (non-finite values become null, so every
                  line is strict JSON). Flushed after every line: a killed run keeps all it logged.
  tensorboard/    TensorBoard event files (tensorboardX, no TensorFlow), tag "<split>/<name>".
  report.json     the final report, written atomically (temporary file + rename).

Resuming: a run restarted from a checkpoint at step `s` logs steps `s + 1, ...` again. Pass
`resume_step=s` (or call `truncate_after(s)`): lines with `step > s` are dropped from
metrics.jsonl (atomically) and TensorBoard is told to purge events from step `s + 1` on, so
neither file ends up with duplicate steps. A partial last line left by a kill is dropped too.

A log line that cannot be written (no space left, permission lost, read-only file system) raises
`storage.StorageError` naming the file, the step and the last complete checkpoint.

Plots use Matplotlib's object API with the Agg canvas (no display, no global pyplot state).

In a multi-process run every process holds the whole result, and only the first writes: the
logs (`RunLogger`), the progress bar, the report, the summary, the splits, the predictions and
the plots (`write_*` and `plot_*` return at once on the others; `writes_files` decides).

Also what a run records about where it comes from: `provenance` (stored with checkpoints) and
`machine` (stored with reports whose figures depend on the CPU).
"""

import contextlib
import csv
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
import tqdm
from matplotlib.figure import Figure
from tensorboardX import SummaryWriter

import metaiqa_jax
from metaiqa_jax import checkpoints, storage
from metaiqa_jax import metrics as metrics_lib
from metaiqa_jax.data import splits as splits_lib

METRICS_FILENAME = 'metrics.jsonl'
TENSORBOARD_DIRNAME = 'tensorboard'
REPORT_FILENAME = 'report.json'

logger = logging.getLogger(__name__)


def writes_files() -> bool:
  """True on the one process that writes a run's logs, reports, plots and tables (the first);
  every writer here asks it, so programs never do."""
  return jax.process_index() == 0


def provenance(writer: str, config: ml_collections.ConfigDict) -> dict:
  """What a checkpoint records about how it was made: the training function `writer` (e.g.
  'meta_train', 'finetune'), the command line, the whole config and the package version."""
  return {'writer': writer, 'command': shlex.join(sys.argv), 'config': config.to_dict(),
          'package_version': metaiqa_jax.__version__}


def machine() -> dict:
  """Where a run's figures come from: `{'cpu', 'cores', 'devices', 'jax'}` (the CPU model from
  /proc/cpuinfo where there is one, else `platform.processor()`; the device kind and count).

  XLA compiles for the host's vector units, so float rounding, and with it a trained model's
  figures in the last digits or more, can differ between CPU models; on one model they repeat.
  """
  cpu = platform.processor() or platform.machine()
  with contextlib.suppress(OSError):
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                 cpu)
  devices = jax.devices()
  return {'cpu': cpu, 'cores': os.cpu_count(),
          'devices': f'{len(devices)} x {devices[0].device_kind}', 'jax': jax.__version__}


def _json_value(value) -> Optional[float]:
  value = float(value)
  return value if math.isfinite(value) else None


class RunLogger:
  """Logs scalar metrics of a run to metrics.jsonl and TensorBoard.

  Args:
    workdir: the run's working directory (must exist and be writable).
    is_primary: whether this process writes (default `writes_files()`: the first of a
      multi-process run); on the others nothing is written.
    resume_step: the checkpoint step a resumed run restarts from; later log entries are dropped.
    last_checkpoint: returns the step a rerun would resume from, named when a write fails
      (`Checkpointer.last_complete_step`; default: the newest complete one in the workdir).
  """

  def __init__(self, workdir, *, is_primary: Optional[bool] = None,
               resume_step: Optional[int] = None,
               last_checkpoint: Optional[Callable[[], Optional[int]]] = None):
    self.workdir = os.fspath(workdir)
    self.is_primary = writes_files() if is_primary is None else is_primary
    self._last_checkpoint = last_checkpoint or (
        lambda: checkpoints.last_complete_step(self.workdir))
    self.jsonl_path = os.path.join(self.workdir, METRICS_FILENAME)
    self._writer = None
    self._jsonl = None
    if not self.is_primary:
      return
    if resume_step is not None:
      self._truncate_jsonl(resume_step)
    self._open(purge_step=None if resume_step is None else resume_step + 1)

  def _open(self, purge_step: Optional[int]) -> None:
    self._writer = SummaryWriter(os.path.join(self.workdir, TENSORBOARD_DIRNAME),
                                 purge_step=purge_step)
    self._jsonl = open(self.jsonl_path, 'a', encoding='utf-8')

  def _truncate_jsonl(self, step: int) -> None:
    if not os.path.exists(self.jsonl_path):
      return
    kept, dropped_partial = [], 0
    with open(self.jsonl_path, encoding='utf-8') as f:
      for line in f:
        try:
          entry = json.loads(line)
        except json.JSONDecodeError:
          dropped_partial += 1
          continue
        if entry['step'] <= step:
          kept.append(json.dumps(entry) + '\n')
    if dropped_partial:
      logger.warning('dropped %d unparsable line(s) of %s (a run killed mid-write)',
                     dropped_partial, self.jsonl_path)
    storage.atomic_write_text(self.jsonl_path, ''.join(kept))

  def truncate_after(self, step: int) -> None:
    """Forgets everything logged for steps after `step` (on resume from checkpoint `step`)."""
    if not self.is_primary:
      return
    self.close()
    self._truncate_jsonl(step)
    self._open(purge_step=step + 1)

  def log(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    """Records the scalar `metrics` (floats, numpy or jax scalars) of `split` at `step`.

    Non-scalar entries (e.g. the fitted logistic parameters of `evaluate_predictions`) are
    report material, not time series: they are left out.

    Raises:
      storage.StorageError: the line could not be written (the logger is closed then).
    """
    if not self.is_primary:
      return
    metrics = {name: value for name, value in metrics.items() if np.ndim(value) == 0}
    values = {name: _json_value(value) for name, value in metrics.items()}
    entry = {'step': int(step), 'split': split, 'wall_time': time.time(), 'metrics': values}
    try:
      self._jsonl.write(json.dumps(entry) + '\n')
      self._jsonl.flush()
      for name, value in metrics.items():
        self._writer.add_scalar(f'{split}/{name}', float(value), int(step))
      self._writer.flush()
    except OSError as e:
      with contextlib.suppress(OSError):  # Flushing again fails the same way.
        self.close()
      self._raise_storage_error(f'the log of step {step} to {e.filename or self.jsonl_path}', e)

  def _raise_storage_error(self, what: str, error: OSError) -> None:
    """Raises `StorageError` for a failed write of `what`, or `error` if no storage fault."""
    reason = storage.fault_reason(error)
    if reason is None:
      raise error
    raise storage.StorageError(storage.stopped_message(what, reason,
                                                       self._last_checkpoint())) from error

  def close(self) -> None:
    """Flushes and closes the files (once; later calls do nothing).

    Raises:
      storage.StorageError: what was buffered could not be written.
    """
    if self._jsonl is None:
      return
    handles = (self._jsonl, self._writer)
    self._jsonl = self._writer = None
    failure = None
    for handle in handles:
      try:
        handle.close()
      except OSError as e:
        failure = failure or e
    if failure:
      self._raise_storage_error(f'the logs in {self.workdir}', failure)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    if exc_type is None:
      self.close()
    else:
      with contextlib.suppress(OSError):  # The error ending the block is the one to report.
        self.close()


def read_metrics(workdir, split: Optional[str] = None) -> list[dict]:
  """The entries of `workdir/metrics.jsonl` (optionally of one split), in logging order."""
  with open(os.path.join(os.fspath(workdir), METRICS_FILENAME), encoding='utf-8') as f:
    entries = [json.loads(line) for line in f if line.strip()]
  return [e for e in entries if split is None or e['split'] == split]


def progress_bar(total: int, *, initial: int = 0, desc: Optional[str] = None) -> tqdm.tqdm:
  """A tqdm bar over steps, shown by the process that writes (`writes_files`) only."""
  return tqdm.tqdm(total=total, initial=initial, desc=desc, disable=not writes_files(),
                   dynamic_ncols=True)


def show_metrics(bar: tqdm.tqdm, metrics: Mapping[str, Any]) -> None:
  """Shows `metrics` (e.g. loss, SROCC) after the bar, 4 significant digits each."""
  bar.set_postfix({name: f'{float(value):.4g}' for name, value in metrics.items()},
                  refresh=False)


def write_report(workdir, report: Mapping[str, Any]) -> str:
  """Writes `report` as `workdir/report.json` atomically (first process only); returns the
  path.

  numpy/jax scalars and arrays are converted to numbers and lists; non-finite floats to null.
  """
  def convert(value):
    if isinstance(value, Mapping):
      return {str(k): convert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return [convert(v) for v in value]
    if hasattr(value, 'tolist') and not isinstance(value, (str, bytes)):
      return convert(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
      return None
    return value

  path = os.path.join(os.fspath(workdir), REPORT_FILENAME)
  if writes_files():
    storage.atomic_write_text(path, json.dumps(convert(report), indent=2, sort_keys=True) + '\n')
  return path


def write_splits(path, splits: Sequence[Mapping]) -> None:
  """Saves train/val/test splits at `path` (`data.splits.save_splits`; first process only)."""
  if writes_files():
    splits_lib.save_splits(path, splits)


def write_predictions(path, rows: Sequence[tuple]) -> None:
  """Writes `predictions.csv` at `path`: a header `part, name, mos, mos_norm, prediction`, then
  one line per row `(part, name, mos, mos_norm, prediction)`, numbers to 6 significant digits
  (first process only)."""
  if not writes_files():
    return
  with open(os.fspath(path), 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(['part', 'name', 'mos', 'mos_norm', 'prediction'])
    writer.writerows((part, n, f'{m:.6g}', f'{mn:.6g}', f'{p:.6g}')
                     for part, n, m, mn, p in rows)


def plot_scatter(path, pred, mos, logistic_params: Optional[Sequence[float]] = None, *,
                 title: Optional[str] = None) -> None:
  """Saves a PNG of predicted quality (x) against MOS (y), with the fitted logistic curve.

  `logistic_params` are `metrics.fit_logistic`'s `(b1, b2, b3, b4)`; omitted, they are fitted
  here. Non-finite pairs are left out of the plot.
  """
  if not writes_files():
    return
  pred, mos = np.asarray(pred, np.float64), np.asarray(mos, np.float64)
  keep = np.isfinite(pred) & np.isfinite(mos)
  pred, mos = pred[keep], mos[keep]
  if logistic_params is None:
    logistic_params = metrics_lib.fit_logistic(pred, mos)
  fig = Figure(figsize=(5, 4.5), dpi=100)
  ax = fig.add_subplot()
  ax.scatter(pred, mos, s=8, alpha=0.6, label='images')
  grid = np.linspace(pred.min(), pred.max(), 200)
  ax.plot(grid, metrics_lib.logistic4(grid, *logistic_params), color='C3', label='logistic fit')
  ax.set_xlabel('predicted quality')
  ax.set_ylabel('MOS')
  ax.set_title(title or f'n = {pred.size}')
  ax.legend(loc='best')
  fig.tight_layout()
  fig.savefig(os.fspath(path), format='png')


def plot_curves(path, x: Sequence[float], curves: Mapping[str, Sequence[float]],
                xlabel: str, ylabel: str, *, title: Optional[str] = None) -> None:
  """Saves a PNG of one line per `curves` entry against `x` (e.g. SROCC vs adaptation steps)."""
  for label, y in curves.items():
    if len(y) != len(x):
      raise ValueError(f'curve {label!r} has {len(y)} values for {len(x)} x positions')
  if not writes_files():
    return
  fig = Figure(figsize=(5.5, 4), dpi=100)
  ax = fig.add_subplot()
  for label, y in curves.items():
    ax.plot(x, y, marker='o', label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(loc='best')
  fig.tight_layout()
  fig.savefig(os.fspath(path), format='png')


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
                   float_format: str = '.3f') -> str:
  """A GitHub-markdown table of `rows` (dicts) restricted to `columns`, floats formatted.

  A value missing from a row is shown as an empty cell.
  """
  def cell(value):
    if isinstance(value, (float, np.floating)):
      return format(float(value), float_format)
    return '' if value is None else str(value)

  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '|'.join('---' for _ in columns) + '|']
  lines += ['| ' + ' | '.join(cell(row.get(c)) for c in columns) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def interval_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
  """A markdown table of `metrics.summarise` rows: `keys`, then SROCC and PLCC as
  'mean ± 95% half-width', then n."""
  return markdown_table(
      [dict(r) | {'SROCC': f"{r['srocc']:.3f} ± {r['srocc_ci95']:.3f}",
                  'PLCC': f"{r['plcc']:.3f} ± {r['plcc_ci95']:.3f}"} for r in rows],
      list(keys) + ['SROCC', 'PLCC', 'n'])


def write_outputs(workdir, report: Mapping[str, Any], summary: str) -> None:
  """Writes `summary` (markdown) to workdir/summary.md and `report` to workdir/report.json
  (first process only)."""
  if writes_files():
    storage.atomic_write_text(os.path.join(os.fspath(workdir), 'summary.md'), summary)
  write_report(workdir, report)


def plot_intervals(path, labels: Sequence[str], means: Sequence[float],
                   half_widths: Sequence[float], ylabel: str, *,
                   title: Optional[str] = None) -> None:
  """Saves a PNG of one point per label with its interval (mean ± half width) as error bar."""
  if not writes_files():
    return
  fig = Figure(figsize=(5.5, 4), dpi=100)
  ax = fig.add_subplot()
  positions = np.arange(len(labels))
  errors = np.nan_to_num(np.asarray(half_widths, np.float64))
  ax.errorbar(positions, means, yerr=errors, fmt='o', capsize=6, markersize=7)
  ax.set_xticks(positions, labels)
  ax.set_xlim(-0.5, len(labels) - 0.5)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.fspath(path), format='png')


def replace_generated_section(text: str, name: str, content: str) -> str:
  """`text` with the lines between `<!-- BEGIN name -->` and `<!-- END name -->` replaced by
  `content` (the marker lines are kept).

  Raises:
    ValueError: the markers are missing, repeated or out of order (names them).
  """
  begin, end = f'<!-- BEGIN {name} -->', f'<!-- END {name} -->'
  if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
    raise ValueError(f'expected one "{begin}" line followed by one "{end}" line')
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  return f'{head}{begin}\n{content.strip()}\n{end}{tail}'

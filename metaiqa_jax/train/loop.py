"""The training loop shared by meta-training, the multitask baseline and fine-tuning.

`run_steps` owns everything around the step function: resuming from the workdir's latest
readable checkpoint, logging (`metrics.jsonl`, TensorBoard, progress bar), validation,
checkpoints (latest + best by val SROCC), stopping on a NaN/Inf loss, and SIGTERM. Step `s`
must be a function of (seed, s) only (data and randomness), so a resumed run gives the same
result as an uninterrupted one.

SIGTERM (what Slurm, Kubernetes and TPU/GCE preemption send first) is handled gracefully: the
step in flight finishes, its state is checkpointed and flushed to disk, and `Preempted`
is raised (the launch exits with status 143). In a multi-process run the processes agree after
every step whether any of them got the signal, so all stop after the same step. SIGKILL cannot
be caught; the run then resumes from the last checkpoint that was complete on disk.

The checkpointer and the logs are closed however the loop ends; a checkpoint or log line that
cannot be written (full disk, lost permission) stops it with `storage.StorageError`.
"""

import contextlib
import dataclasses
import logging
import math
import signal
import threading
from typing import Any, Callable, Optional

import ml_collections

from metaiqa_jax import checkpoints, models, parallel, preprocess
from metaiqa_jax.train import reporting


class Preempted(RuntimeError):
  """SIGTERM arrived. In a training loop the state after the step in flight was checkpointed
  (the message says which step and where); elsewhere the run stopped where it was."""


class NonFiniteLossError(FloatingPointError):
  """A training loss became NaN or Inf; the message names the step and the last good checkpoint."""


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How long `run_steps` runs and when it logs, validates and checkpoints (all in steps; a
  validated step is always checkpointed too, so the best can be kept); how many checkpoints
  it keeps (the latest ones, and the best by validation SROCC)."""
  num_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  keep_latest: int
  keep_best: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'Schedule':
    """The schedule of a pretraining config (num_steps, log_every, eval_every,
    checkpoint_every, keep_checkpoints, keep_best)."""
    return cls(num_steps=config.num_steps, log_every=config.log_every,
               eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
               keep_latest=config.keep_checkpoints, keep_best=config.keep_best)


@contextlib.contextmanager
def sigterm_requests():
  """A list that SIGTERM appends to while the block runs (main thread only; elsewhere the
  default handler stays and the list stays empty)."""
  received = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
  try:
    yield received
  finally:
    signal.signal(signal.SIGTERM, previous)


def run_steps(config: ml_collections.ConfigDict, workdir, *, model: models.MetaIQA,
              inputs: preprocess.InputSpec, state: Any,
              step_fn: Callable[[Any, int], tuple[Any, dict]],
              validate: Callable[[Any], dict], name: str, writer: str,
              loss_name: str = 'loss', schedule: Optional[Schedule] = None,
              desc: Optional[str] = None) -> dict:
  """Runs steps `0..schedule.num_steps - 1` (resuming where the workdir's checkpoints stop).

  Logs and the progress bar come from the process that writes (`reporting.writes_files`).

  Args:
    config: the run's config, stored with every checkpoint, its `seed` too.
    workdir: the run's (writable) working directory.
    model: for the ModelConfig stored with every checkpoint.
    inputs: how images are fed to the model (`config.data`'s), stored with every checkpoint.
    state: the initial train state (replaced by the restored one when resuming).
    step_fn: `(state, step) -> (state, metrics)`, metrics holding a scalar `loss`.
    validate: `state -> metrics` (with `srocc`, which ranks checkpoints).
    name: what a step is called in messages ('meta-step', ...).
    writer: the training function, recorded with every checkpoint ('meta_train', ...).
    loss_name: what the loss is called in the NaN message ('query loss', ...).
    schedule: default `Schedule.from_config(config)`.
    desc: the progress bar's label (default `name`).

  Returns:
    `{'state', 'final_val', 'val_history', 'best_step'}`.

  Raises:
    NonFiniteLossError: the loss became NaN/Inf; checkpoints of earlier steps are kept.
    Preempted: SIGTERM arrived; the state after the step in flight was checkpointed.
    storage.StorageError: a checkpoint or log write failed (names the step and the last
      complete checkpoint, from which the run resumes).
  """
  schedule = Schedule.from_config(config) if schedule is None else schedule
  with contextlib.ExitStack() as stack:
    ckpt = stack.enter_context(checkpoints.Checkpointer(
        workdir, model_config=models.model_config(model),
        inputs=inputs,
        written_by=reporting.provenance(writer, config), keep_latest=schedule.keep_latest,
        keep_best=schedule.keep_best, best_metric='val_srocc'))
    restored = ckpt.restore_latest(state)
    start = 0
    if restored is not None:
      start, state, _ = restored
      logging.info('resuming %s from step %d', workdir, start)
    run_log = stack.enter_context(reporting.RunLogger(
        workdir, resume_step=start if restored is not None else None,
        last_checkpoint=ckpt.last_complete_step))
    val, history = None, []
    with sigterm_requests() as sigterm, reporting.progress_bar(
        schedule.num_steps, initial=start, desc=desc or name) as bar:
      for step in range(start, schedule.num_steps):
        state, step_metrics = step_fn(state, step)
        done = step + 1
        loss = float(step_metrics['loss'])
        if not math.isfinite(loss):
          ckpt.wait_until_finished()
          good = ckpt.all_steps()
          raise NonFiniteLossError(
              f'{name} {done}: {loss_name} is {loss}; stopping. The last good checkpoint is '
              f'step {good[-1] if good else "(none)"} in {ckpt.directory}')
        last = done == schedule.num_steps
        if done % schedule.log_every == 0 or last:
          run_log.log(done, 'train', step_metrics)
        evaluated = done % schedule.eval_every == 0 or last
        if evaluated:
          val = validate(state)
          run_log.log(done, 'val', val)
          history.append({'step': done, **val})
        bar.update(1)
        reporting.show_metrics(bar, {'loss': loss}
                               | ({'val_srocc': val['srocc']} if val else {}))
        # Every process stops after the same step, whichever of them got the signal.
        stop = parallel.any_process(bool(sigterm))
        if done % schedule.checkpoint_every == 0 or evaluated or last or stop:
          # Ranked only by a validation of this very step, so the kept "best" checkpoints do
          # not depend on where a run was resumed.
          ckpt.save(done, state, metrics={'val_srocc': val['srocc']} if evaluated else None,
                    extra_json={'seed': config.seed})
        if stop:
          ckpt.wait_until_finished()
          raise Preempted(
              f'SIGTERM received: stopped after {name} {done}, saved as checkpoint step '
              f'{done} in {ckpt.directory}; run again on the same workdir to resume')
    ckpt.wait_until_finished()
    if val is None:  # Resumed a finished run: evaluate the final state once more.
      val = validate(state)
    best_step = ckpt.best_step()
  return {'state': state, 'final_val': val, 'val_history': history, 'best_step': best_step}

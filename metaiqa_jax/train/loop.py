"""The outer training loop shared by meta-training and the multitask baseline.

`run_steps` owns everything around the step function: resuming from the workdir's latest
readable checkpoint, logging (`metrics.jsonl`, TensorBoard, progress bar), validation,
checkpoints (latest + best by val SROCC), stopping on a NaN/Inf loss, and SIGTERM. Step `s`
must be a function of (seed, s) only (data and randomness), so a resumed run gives the same
result as an uninterrupted one.

SIGTERM (what Slurm, Kubernetes and TPU/GCE preemption send first) is handled gracefully: the
step in flight finishes, its state is checkpointed and flushed to disk, and `common.Preempted`
is raised (the launch exits with status 143). In a multi-process run the processes agree after
every step whether any of them got the signal, so all stop after the same step. SIGKILL cannot
be caught; the run then resumes from the last checkpoint that was complete on disk.

The checkpointer and the logs are closed however the loop ends; a checkpoint or log line that
cannot be written (full disk, lost permission) stops it with `storage.StorageError`.
"""

import contextlib
import logging
import math
import signal
import threading
from typing import Any, Callable

import ml_collections

from metaiqa_jax import checkpoints, models, parallel
from metaiqa_jax.train import common, reporting


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


def run_steps(config: ml_collections.ConfigDict, workdir, *, model: models.MetaIQA, state: Any,
              step_fn: Callable[[Any, int], tuple[Any, dict]],
              validate: Callable[[Any], dict], name: str, writer: str,
              loss_name: str = 'loss', primary: bool = True) -> dict:
  """Runs steps `0..config.num_steps - 1` (resuming where the workdir's checkpoints stop).

  Args:
    config: uses num_steps, log_every, eval_every, checkpoint_every, keep_checkpoints,
      keep_best, seed.
    workdir: the run's (writable) working directory.
    model: for the ModelConfig stored with every checkpoint.
    state: the initial train state (replaced by the restored one when resuming).
    step_fn: `(state, step) -> (state, metrics)`, metrics holding a scalar `loss`.
    validate: `state -> metrics` (with `srocc`, which ranks checkpoints).
    name: what a step is called in messages and the progress bar ('meta-step', ...).
    writer: the training function, recorded with every checkpoint ('meta_train', ...).
    loss_name: what the loss is called in the NaN message ('query loss', ...).
    primary: False on all processes but the first (no logs, no progress bar).

  Returns:
    `{'state', 'final_val', 'val_history', 'best_step'}`.

  Raises:
    common.NonFiniteLossError: the loss became NaN/Inf; checkpoints of earlier steps are kept.
    common.Preempted: SIGTERM arrived; the state after the step in flight was checkpointed.
    storage.StorageError: a checkpoint or log write failed (names the step and the last
      complete checkpoint, from which the run resumes).
  """
  with checkpoints.Checkpointer(workdir, model_config=models.model_config(model),
                              inputs=common.input_spec(config.data),
                              written_by=common.provenance(writer, config),
                              keep_latest=config.keep_checkpoints, keep_best=config.keep_best,
                              best_metric='val_srocc') as ckpt:
    restored = ckpt.restore_latest(state)
    start = 0
    if restored is not None:
      start, state, _ = restored
      logging.info('resuming %s from step %d', workdir, start)
    with reporting.RunLogger(workdir, is_primary=primary,
                             resume_step=start if restored is not None else None,
                             last_checkpoint=ckpt.last_complete_step) as run_log:
      val, history = None, []
      with sigterm_requests() as sigterm, reporting.progress_bar(
          config.num_steps, initial=start, desc=name, enabled=primary) as bar:
        for step in range(start, config.num_steps):
          state, step_metrics = step_fn(state, step)
          done = step + 1
          loss = float(step_metrics['loss'])
          if not math.isfinite(loss):
            ckpt.wait_until_finished()
            good = ckpt.all_steps()
            raise common.NonFiniteLossError(
                f'{name} {done}: {loss_name} is {loss}; stopping. The last good checkpoint is '
                f'step {good[-1] if good else "(none)"} in {ckpt.directory}')
          bar.update(1)
          reporting.show_metrics(bar, {'loss': loss}
                                 | ({'val_srocc': val['srocc']} if val else {}))
          if done % config.log_every == 0 or done == config.num_steps:
            run_log.log(done, 'train', step_metrics)
          evaluated = done % config.eval_every == 0 or done == config.num_steps
          if evaluated:
            val = validate(state)
            run_log.log(done, 'val', val)
            history.append({'step': done, **val})
          # Every process stops after the same step, whichever of them got the signal.
          stop = parallel.any_process(bool(sigterm))
          if done % config.checkpoint_every == 0 or done == config.num_steps or stop:
            # Ranked only by a validation of this very step, so the kept "best" checkpoints do
            # not depend on where a run was resumed.
            ckpt.save(done, state, metrics={'val_srocc': val['srocc']} if evaluated else None,
                      extra_json={'seed': config.seed})
          if stop:
            ckpt.wait_until_finished()
            raise common.Preempted(
                f'SIGTERM received: stopped after {name} {done}, saved as checkpoint step '
                f'{done} in {ckpt.directory}; run again on the same workdir to resume')
      ckpt.wait_until_finished()
      if val is None:  # Resumed a finished run: evaluate the final state once more.
        val = validate(state)
      best_step = ckpt.best_step()
  return {'state': state, 'final_val': val, 'val_history': history, 'best_step': best_step}

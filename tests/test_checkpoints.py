"""metaiqa_jax.checkpoints: roundtrip, retention, corruption fallback, weights-only restore."""

import errno
import glob
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import struct

from metaiqa_jax import checkpoints, storage
from metaiqa_jax.models import ModelConfig, create_model, init_variables
from metaiqa_jax.preprocess import InputSpec

TINY = ModelConfig('resnet18', 0.125, 10, (16, 8), 0.5)


@struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  inner_lr: jax.Array


def make_state(variables, step=0):
  params = variables['params']
  opt_state = optax.adam(1e-3).init(params)
  # Non-trivial Adam moments, so a roundtrip that drops or zeros them is caught.
  opt_state = jax.tree.map(lambda x: x + 0.5 if x.dtype == jnp.float32 else x + 7, opt_state)
  return TrainState(jnp.asarray(step, jnp.int32), params, variables['batch_stats'], opt_state,
                    jnp.asarray(0.01, jnp.float32))


@pytest.fixture(scope='module')
def small_variables():
  rng = np.random.default_rng(0)
  return {'params': {'dense': {'kernel': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                               'bias': jnp.zeros((4,), jnp.float32)}},
          'batch_stats': {'bn': {'mean': jnp.arange(4.0), 'var': jnp.ones(4)}}}


@pytest.fixture(scope='module')
def tiny_variables():
  """Random values in the tiny model's variable tree (shapes by tracing only: no compile)."""
  model = create_model(**TINY.to_dict())
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), image_size=32))
  rng = np.random.default_rng(1)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


def assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def largest_data_file(step_dir):
  return max(glob.glob(os.path.join(step_dir, 'state', 'd', '*')), key=os.path.getsize)


def test_roundtrip_with_adam_state_and_metadata(tmp_path, small_variables):
  state = make_state(small_variables, step=3)
  written_by = {'writer': 'meta_train', 'config': {'seed': 1}}
  with checkpoints.Checkpointer(tmp_path, model_config=TINY, written_by=written_by) as ckpt:
    ckpt.save(3, state, metrics={'val_srocc': 0.5}, extra_json={'data_position': 96, 'seed': 1})
    ckpt.wait_until_finished()
    step, restored, meta = ckpt.restore_latest(jax.eval_shape(lambda: state))
  assert step == 3 and isinstance(restored, TrainState)
  assert_trees_equal(restored, state)
  assert meta == {'format': 1, 'step': 3, 'model_config': TINY.to_dict(), 'inputs': None,
                  'pixels': {'range': [0.0, 1.0], 'mean': [0.485, 0.456, 0.406],
                             'std': [0.229, 0.224, 0.225]},
                  'written_by': written_by, 'metrics': {'val_srocc': 0.5},
                  'extra': {'data_position': 96, 'seed': 1}}
  assert checkpoints.describe(tmp_path) == meta


def test_empty_workdir_restores_nothing(tmp_path, small_variables):
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    assert ckpt.restore_latest(make_state(small_variables)) is None


def test_keeps_latest_and_best(tmp_path, small_variables):
  state = make_state(small_variables)
  with checkpoints.Checkpointer(tmp_path, keep_latest=2, keep_best=2, async_save=False) as ckpt:
    for step, srocc in [(1, 0.5), (2, 0.9), (3, 0.3), (4, 0.2), (5, 0.1), (6, float('nan'))]:
      ckpt.save(step, state, metrics={'val_srocc': srocc})
    assert ckpt.all_steps() == [1, 2, 5, 6]  # best two (2: 0.9, 1: 0.5) + latest two.
    assert ckpt.best_step() == 2


def _files(directory):
  """{relative path: size} of the files under `directory`."""
  return {os.path.relpath(os.path.join(root, name), directory):
          os.path.getsize(os.path.join(root, name))
          for root, _, names in os.walk(directory) for name in names}


def test_retention_moves_a_step_away_whole_then_deletes_it(tmp_path, small_variables):
  # Deleting a step in place, file by file, left a step directory without its `state` when the
  # process was killed meanwhile; moving it away first is one rename.
  state = make_state(small_variables)
  directory = tmp_path / 'checkpoints'
  leftover = directory / checkpoints.RETIRED_DIRNAME / '9' / 'state'
  leftover.mkdir(parents=True)  # Retired by a run killed before it deleted them.
  (leftover / '_METADATA').write_text('{}')
  with checkpoints.Checkpointer(tmp_path, keep_latest=1, keep_best=0, async_save=False) as ckpt:
    assert not (directory / checkpoints.RETIRED_DIRNAME).exists()
    ckpt.save(1, state)
    step_1 = _files(directory / '1')
    ckpt.save(2, state)
    assert ckpt.all_steps() == [2] and not (directory / '1').exists()
    assert _files(directory / checkpoints.RETIRED_DIRNAME / '1') == step_1
    ckpt.save(3, state)
    assert os.listdir(directory / checkpoints.RETIRED_DIRNAME) == ['2']
  assert not (directory / checkpoints.RETIRED_DIRNAME).exists()
  assert sorted(os.listdir(directory)) == ['3']


def test_corrupted_latest_falls_back_with_warning(tmp_path, small_variables, caplog):
  state = make_state(small_variables)
  with checkpoints.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state.replace(step=jnp.asarray(1)))
    ckpt.save(2, state.replace(step=jnp.asarray(2)))
  data_file = largest_data_file(tmp_path / 'checkpoints' / '2')
  os.truncate(data_file, os.path.getsize(data_file) // 2)
  with checkpoints.Checkpointer(tmp_path, async_save=False) as ckpt:
    with caplog.at_level(logging.WARNING, logger='metaiqa_jax.checkpoints'):
      step, restored, _ = ckpt.restore_latest(jax.eval_shape(lambda: state))
    assert step == 1 and int(restored.step) == 1
    assert any(os.path.join('checkpoints', '2') in r.getMessage() and 'unreadable' in
               r.getMessage() for r in caplog.records)
    assert os.listdir(tmp_path / 'corrupt_checkpoints')[0].startswith('2-')
    ckpt.save(2, state)  # The resumed run can write the quarantined step again.
    assert ckpt.all_steps() == [1, 2]


def test_missing_metadata_falls_back(tmp_path, small_variables):
  state = make_state(small_variables)
  with checkpoints.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state)
    ckpt.save(2, state)
  for name in os.listdir(tmp_path / 'checkpoints' / '2' / 'meta'):
    os.remove(tmp_path / 'checkpoints' / '2' / 'meta' / name)
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    assert ckpt.restore_latest(state)[0] == 1


def test_truncated_metrics_file_falls_back(tmp_path, tiny_variables):
  older = jax.tree.map(lambda x: x - 1.0, tiny_variables)
  with checkpoints.Checkpointer(tmp_path, model_config=TINY, async_save=False) as ckpt:
    ckpt.save(1, make_state(older), metrics={'val_srocc': 0.2})
    ckpt.save(2, make_state(tiny_variables), metrics={'val_srocc': 0.1})
  (tmp_path / 'checkpoints' / '2' / 'metrics' / 'metrics').write_text('{"val_sr')
  # Step 1 is the only one with a readable metric, so it counts as the best.
  assert_trees_equal(checkpoints.restore_variables(tmp_path)[1], older)
  with checkpoints.Checkpointer(tmp_path) as ckpt:  # orbax alone fails to open this directory.
    assert ckpt.all_steps() == [1]
    assert ckpt.restore_latest(make_state(older))[0] == 1


def test_leftover_tmp_dir_is_ignored(tmp_path, small_variables):
  state = make_state(small_variables)
  with checkpoints.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state)
  half_written = tmp_path / 'checkpoints' / '7.orbax-checkpoint-tmp-1700000000' / 'state'
  half_written.mkdir(parents=True)
  (half_written / '_METADATA').write_text('{"tree_metad')
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    assert ckpt.all_steps() == [1]
    assert ckpt.restore_latest(state)[0] == 1


def test_wrong_state_structure_is_an_error_not_corruption(tmp_path, small_variables):
  state = make_state(small_variables)
  with checkpoints.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state)
    wrong = state.replace(params={'dense': {'kernel': jnp.zeros((5, 4)),
                                            'bias': jnp.zeros(4)}})
    with pytest.raises(checkpoints.CheckpointMismatchError,
                       match=r'params/dense/kernel: checkpoint has shape \(3, 4\), '
                             r'expected \(5, 4\)'):
      ckpt.restore_latest(jax.eval_shape(lambda: wrong))
    assert ckpt.all_steps() == [1]  # Nothing was quarantined.
    with pytest.raises(ValueError, match=r"dict has no top-level \['batch_stats'\]"):
      ckpt.save(2, {'params': state.params})


def test_restore_variables_picks_best_and_rebuilds_model(tmp_path, tiny_variables):
  good = jax.tree.map(lambda x: x + 1.0, tiny_variables)
  with checkpoints.Checkpointer(tmp_path, model_config=TINY, async_save=False) as ckpt:
    ckpt.save(1, make_state(good), metrics={'val_srocc': 0.8})
    ckpt.save(2, make_state(tiny_variables), metrics={'val_srocc': 0.1})
  config, variables = checkpoints.restore_variables(tmp_path)
  assert config == TINY
  assert_trees_equal(variables, good)
  # A step directory and the checkpoints directory work too.
  assert_trees_equal(checkpoints.restore_variables(tmp_path / 'checkpoints' / '2')[1],
                     tiny_variables)
  assert_trees_equal(checkpoints.restore_variables(tmp_path / 'checkpoints')[1], good)


def test_checkpoint_describes_its_model_and_inputs(tmp_path, tiny_variables):
  inputs = InputSpec(32, resize_to=0, eval_grid=2, fragments=4)
  with checkpoints.Checkpointer(tmp_path, model_config=TINY, inputs=inputs,
                                async_save=False) as ckpt:
    ckpt.save(1, make_state(tiny_variables), metrics={'val_srocc': 0.3})
  config, variables = checkpoints.restore_variables(tmp_path)  # No model settings given.
  assert config == TINY
  assert_trees_equal(variables, tiny_variables)
  assert checkpoints.stored_inputs(tmp_path) == inputs
  assert checkpoints.stored_inputs(tmp_path / 'checkpoints' / '1') == inputs


def test_checkpoints_without_inputs_leave_them_to_the_caller(tmp_path, tiny_variables):
  with checkpoints.Checkpointer(tmp_path, model_config=TINY, async_save=False) as ckpt:
    ckpt.save(1, make_state(tiny_variables))
  assert checkpoints.stored_inputs(tmp_path) is None
  with pytest.raises(FileNotFoundError, match='no checkpoint directory'):
    checkpoints.stored_inputs(tmp_path / 'nowhere')


def test_restore_variables_rejects_other_width(tmp_path, tiny_variables):
  with checkpoints.Checkpointer(tmp_path, model_config=TINY, async_save=False) as ckpt:
    ckpt.save(1, make_state(tiny_variables))
  wider = ModelConfig('resnet18', 0.25, 10, (16, 8), 0.5)
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match=r'batch_stats/backbone/bn1/mean: checkpoint has shape \(8,\), '
                           r'expected \(16,\)'):
    checkpoints.restore_variables(tmp_path, wider)
  with pytest.raises(FileNotFoundError, match='no checkpoint directory'):
    checkpoints.restore_variables(tmp_path / 'nowhere')


def test_non_writable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  with pytest.raises(checkpoints.WorkdirError, match='a_file/run.*not a writable directory'):
    checkpoints.ensure_writable(blocker / 'run')
  with pytest.raises(checkpoints.WorkdirError, match='a_file'):
    checkpoints.Checkpointer(blocker)
  assert checkpoints.ensure_writable(tmp_path / 'new' / 'run').is_dir()


def failing_json_save(step):
  """A replacement for orbax's JSON writer that fails with ENOSPC for checkpoint `step`, in
  orbax's save thread like a real full disk (also used by tests/faults/)."""
  original = ocp.JsonCheckpointHandler._save_fn

  async def save_fn(self, item, directory):
    if f'/{step}.orbax-checkpoint-tmp' in os.fspath(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(directory))
    return await original(self, item, directory)
  return save_fn


@pytest.mark.parametrize('async_save', [True, False])
def test_full_disk_names_the_step_and_the_last_complete_one(tmp_path, small_variables,
                                                            monkeypatch, async_save):
  state = make_state(small_variables)
  monkeypatch.setattr(ocp.JsonCheckpointHandler, '_save_fn', failing_json_save(3))
  ckpt = checkpoints.Checkpointer(tmp_path, keep_latest=3, async_save=async_save)
  with pytest.raises(storage.StorageError) as error:
    for step in range(1, 6):
      ckpt.save(step, state.replace(step=jnp.asarray(step)))
  assert str(error.value) == (
      f'could not write checkpoint step 3 in {tmp_path / "checkpoints"}: No space left on '
      'device. Make room or fix the file system; the last complete checkpoint is step 2: running '
      'the same command again resumes from it')
  ckpt.close()  # Already stopped: nothing more to raise.
  left = sorted(os.listdir(tmp_path / 'checkpoints'))
  assert left[:2] == ['1', '2'] and left[2].startswith('3.orbax-checkpoint-tmp') and len(left) == 3
  monkeypatch.undo()
  with checkpoints.Checkpointer(tmp_path, keep_latest=3) as resumed:
    step, restored, _ = resumed.restore_latest(jax.eval_shape(lambda: state))
    assert step == 2 and int(restored.step) == 2
    resumed.save(3, state)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2', '3']  # Incomplete: deleted.


def test_warns_when_the_last_checkpoint_would_not_fit(tmp_path, small_variables, monkeypatch,
                                                      caplog):
  state = make_state(small_variables)
  with checkpoints.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state)
    with caplog.at_level(logging.WARNING):
      ckpt.save(2, state)
    assert 'MB free' not in caplog.text
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: usage._replace(free=1000))
    with caplog.at_level(logging.WARNING):
      ckpt.save(3, state)
  assert re.search(r'checkpoints has 0.000954 MB free, less than the [\d.e-]+ MB of checkpoint '
                   r'step 2: saving step 3 will probably fail', caplog.text)


_SAVE_LOOP = textwrap.dedent('''
    import sys, jax.numpy as jnp
    from metaiqa_jax import checkpoints
    ckpt = checkpoints.Checkpointer(sys.argv[1], keep_latest=3)
    for step in range(1, 1000):
      value = jnp.full((512, 1024), float(step))
      ckpt.save(step, {'params': {'w': value}, 'batch_stats': {}})
      if step % 2 == 0:
        ckpt.wait_until_finished()
      print(step, flush=True)
''')


def test_sigkill_during_saves_leaves_a_readable_checkpoint(tmp_path):
  proc = subprocess.Popen([sys.executable, '-c', _SAVE_LOOP, str(tmp_path)],
                          stdout=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if int(line) >= 5:
        break
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    abstract = {'params': {'w': jax.ShapeDtypeStruct((512, 1024), jnp.float32)},
                'batch_stats': {}}
    step, state, _ = ckpt.restore_latest(abstract)
  assert step >= 4
  np.testing.assert_array_equal(np.asarray(state['params']['w']), float(step))

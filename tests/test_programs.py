"""End to end on the CPU: meta-train -> fine-tune -> evaluate -> score -> LODO.

Tiny model (width 1/16, 10 logits, head (16, 8)), 32 px inputs, a 3-type synthetic bank of
48 px photos. Each program is called through the same function its launch calls.
"""

import importlib
import inspect
import json
import os
import pkgutil

import numpy as np
import pytest

import metaiqa_jax.configs
from metaiqa_jax import checkpoints, configlib, scoring
from metaiqa_jax.data import SyntheticBank, registry, views
from metaiqa_jax.data.tfds import MetaiqaSynthetic
from metaiqa_jax.models import construct
from metaiqa_jax.train import (defaults, evaluate, finetune, lodo, meta_train, reporting,
                               setup)

TYPES = (1, 10, 16)  # Gaussian blur, JPEG, brighten.


def tiny_config():
  """A valid config small enough for a CPU test (also used by the fault suite's subprocesses).

  Meta-training as the shipped pretraining runs it (configs/pretraining.py: the inner loop
  adapts the head, tasks mapped with vmap, BatchNorm statistics shared over the meta-batch),
  which compiles in well under half the time second-order MAML through the backbone takes
  (that is tested on a ResNet in test_meta.py).
  """
  c = defaults.base_config()
  c.model.width = 0.0625
  c.model.num_classes = 10
  c.model.head_features = (16, 8)
  c.data.sources = ('synthetic',)
  c.data.roots = ('',)
  c.data.image_size = 32
  c.data.resize_to = 36
  c.data.synthetic_max_side = 48
  c.meta.support_size = 4
  c.meta.query_size = 4
  c.meta.tasks_per_batch = 2
  c.meta.adapt = 'head'
  c.meta.task_map = 'vmap'
  c.meta.batch_norm = 'shared'
  c.num_steps = 4
  c.log_every = 1
  c.eval_every = 2
  c.checkpoint_every = 2
  c.eval_tasks = 1
  c.finetune.n_splits = 2
  c.finetune.epochs = 2
  c.finetune.batch_size = 16
  c.finetune.eval_batch_size = 16
  c.finetune.lr = 1e-3
  c.lodo.shots = (0, 3)
  c.lodo.adapt_steps = (1,)
  c.lodo.repeats = 1
  c.lodo.test_size = 12
  return c


def assert_same_metrics(a, b):
  """Asserts two runs' metric dicts are equal: exactly, except the logistic-fitted PLCC.

  `plcc_logistic` comes from an iterative least-squares fit (MINPACK) on as few as 8 pairs;
  two processes fitting bit-identical predictions have given values 2e-9 apart, so it is compared
  to 1e-6 (relative). Every metric computed directly from the predictions must match exactly.
  """
  assert a.keys() == b.keys()
  assert {k: v for k, v in a.items() if k != 'plcc_logistic'} == {
      k: v for k, v in b.items() if k != 'plcc_logistic'}
  if 'plcc_logistic' in a:
    assert a['plcc_logistic'] == pytest.approx(b['plcc_logistic'], rel=1e-6)


def tiny_source():
  return SyntheticBank(types=TYPES, max_side=48, progress=False)


@pytest.fixture(scope='module')
def source():
  return tiny_source()


@pytest.fixture(scope='module')
def meta_run(tmp_path_factory, source):
  workdir = str(tmp_path_factory.mktemp('meta'))
  return workdir, meta_train.meta_train(tiny_config(), workdir, source=source)


def test_meta_training_on_a_prepared_tfds_dataset_equals_training_on_its_records(
    source, tmp_path):
  # data.sources=('tfds:NAME',) reads the ArrayRecord files TFDS prepared through the same
  # source interface. TFDS stores the records in its own order, so the reference run reads the
  # bank in that order (a Subset): then every meta-batch, loss and weight must be the same.
  data_dir = tmp_path / 'tfds'
  MetaiqaSynthetic(data_dir=str(data_dir), types=TYPES, max_side=48).download_and_prepare(
      file_format='array_record')
  config = tiny_config()
  config.num_steps = config.eval_every = config.checkpoint_every = 2
  config.data.sources, config.data.roots = ('tfds:metaiqa_synthetic',), (str(data_dir),)
  prepared = meta_train.meta_train(config, str(tmp_path / 'tfds_run'))
  names = list(source.metadata()['name'])
  tfds_order = [names.index(n) for n in registry.open_source(
      'tfds:metaiqa_synthetic', str(data_dir), 'test').metadata()['name']]
  native = meta_train.meta_train(config, str(tmp_path / 'native_run'),
                                 source=views.Subset(source, tfds_order))
  assert sorted(tfds_order) != tfds_order  # TFDS did reorder: the Subset is not a no-op.
  losses = [[e['metrics'] for e in reporting.read_metrics(str(tmp_path / run), 'train')]
            for run in ('tfds_run', 'native_run')]
  assert losses[0] == losses[1] and len(losses[0]) == 2
  assert_same_metrics(prepared['final_val'], native['final_val'])


def test_meta_train_writes_checkpoints_logs_and_report(meta_run):
  workdir, report = meta_run
  assert report['steps'] == 4
  assert report['train_types'] == list(TYPES)
  assert 0 <= report['final_val']['n'] and np.isfinite(report['final_val']['loss'])
  assert [h['step'] for h in report['val_history']] == [2, 4]
  assert report['best_step'] in (2, 4)
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))) == [2, 4]
  train_steps = [e['step'] for e in reporting.read_metrics(workdir, 'train')]
  assert train_steps == [1, 2, 3, 4]
  assert json.load(open(os.path.join(workdir, 'report.json')))['steps'] == 4
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  written_by = checkpoints.describe(workdir)['written_by']
  assert written_by['writer'] == 'meta_train'
  assert written_by['config'] == json.loads(json.dumps(tiny_config().to_dict()))


def test_finetune_selects_on_val_and_reports_test(meta_run, source, tmp_path):
  meta_dir, _ = meta_run
  config = tiny_config()
  config.model.init = meta_dir
  report = finetune.finetune(config, str(tmp_path), source=source)
  assert [s['split'] for s in report['splits']] == [0, 1]
  for split in report['splits']:
    vals = [e['metrics']['srocc'] for e in
            reporting.read_metrics(tmp_path / f'split_{split["split"]}', 'val')]
    assert len(vals) == 2
    nan_safe = [v if v is not None else -np.inf for v in vals]
    assert split['best_epoch'] == int(np.argmax(nan_safe)) + 1  # Chosen on val, not test.
    assert set(split['test']) >= {'srocc', 'plcc', 'plcc_logistic', 'krcc', 'rmse'}
  summary = report['test_summary']
  assert set(summary['srocc']) == {'mean', 'std', 'median', 'values'}
  assert len(summary['srocc']['values']) == 2
  assert os.path.exists(tmp_path / 'splits.json')
  assert os.path.getsize(tmp_path / 'scatter_split0.png') > 0
  assert (checkpoints.describe(tmp_path / 'split_0')['written_by']['config']
          == json.loads(json.dumps(config.to_dict())))

  # The same splits again: evaluate the fine-tuned split-0 model on its test part.
  eval_config = tiny_config()
  eval_config.model.init = str(tmp_path / 'split_0')
  eval_config.finetune.split_file = str(tmp_path / 'splits.json')
  eval_config.finetune.splits = (0,)
  eval_dir = tmp_path / 'eval'
  evaluated = evaluate.evaluate(eval_config, str(eval_dir), source=source)
  np.testing.assert_allclose(evaluated['results']['split_0']['srocc'],
                             report['splits'][0]['test']['srocc'], atol=1e-6)
  assert os.path.exists(eval_dir / 'predictions.csv')

  # score() on the same images with the restored weights gives the evaluated predictions.
  _, variables = checkpoints.restore_variables(str(tmp_path / 'split_0'))
  test_idx = np.asarray(json.load(open(tmp_path / 'splits.json'))['splits'][0]['test'][:5])
  images = [source[int(i)]['image'] for i in test_idx]
  scores = scoring.score(variables, images, image_size=32, batch_size=4)
  np.testing.assert_allclose(scores, report['splits'][0]['predictions'][:5], atol=1e-5)


def test_lodo_one_held_out_type(source, tmp_path):
  config = tiny_config()
  config.lodo.held_out = (10,)
  report = lodo.lodo(config, str(tmp_path), source=source)
  assert report['meta_validation'].keys() == {10}
  rows = report['results']
  assert {(r['k'], r['steps']) for r in rows} == {(0, 0), (3, 1)}
  assert all(r['held_out_type'] == 10 for r in rows)
  assert json.load(open(tmp_path / 'type_10' / 'report.json'))['train_types'] == [1, 16]
  assert os.path.getsize(tmp_path / 'srocc_vs_shots.png') > 0


def test_lodo_support_and_query_come_from_disjoint_references(source):
  meta = source.metadata()
  support, query = lodo.draw_support_query(meta, 16, shots=6, test_size=0, seed=3)
  assert len(support) == 6 and len(query) > 0
  assert not set(meta['ref_id'][support]) & set(meta['ref_id'][query])
  assert set(meta['dist_type'][np.concatenate([support, query])]) == {16}


def test_invalid_config_is_rejected_by_key_before_anything_runs(tmp_path, source):
  config = tiny_config()
  config.meta.inner_steps = 0
  with pytest.raises(configlib.ConfigError, match='meta.inner_steps'):
    meta_train.meta_train(config, str(tmp_path), source=source)
  config = tiny_config()
  config.meta.unlocked_typo = 1
  with pytest.raises(configlib.ConfigError, match='unlocked_typo'):
    meta_train.meta_train(config, str(tmp_path), source=source)
  assert not os.listdir(tmp_path)


# Resuming a meta-training or fine-tuning run killed with SIGKILL (and stopped with SIGTERM) to
# the uninterrupted result is tested in tests/faults/test_fault_preemption.py.


def test_every_shipped_config_is_valid_and_installed_with_the_package():
  repo_configs = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs')
  assert os.path.samefile(metaiqa_jax.configs.__path__[0], repo_configs)
  names = [m.name for m in pkgutil.iter_modules(metaiqa_jax.configs.__path__)]
  assert {'demo', 'transfer_livec', 'pretraining', 'meta_tid_kadid'} <= set(names)
  for name in names:
    get_config = importlib.import_module(f'metaiqa_jax.configs.{name}').get_config
    for args in ((), ('smoke',)) if inspect.signature(get_config).parameters else ((),):
      defaults.validate(get_config(*args))


@pytest.mark.parametrize('value, expected', [('', None), ('xla', 'xla'), ('auto', 'auto')])
def test_model_conv_impl_key_reaches_the_model(value, expected):
  config = tiny_config()
  config.model.conv_impl = value
  defaults.validate(config)
  assert construct.build_model(config.model).conv_impl == expected


@pytest.mark.parametrize('algorithm, adapt, order', [('maml', 'all', 2), ('maml', 'head', 1),
                                                     ('fomaml', 'all', 1), ('reptile', 'all', 1)])
def test_meta_training_builds_its_model_for_how_often_it_differentiates(algorithm, adapt, order):
  """'auto' convolutions choose by the use: second order only where MAML adapts the backbone."""
  config = tiny_config()
  config.meta.algorithm, config.meta.adapt = algorithm, adapt
  assert setup.conv_grad_order(config.meta) == order
  assert construct.build_model(config.model, setup.conv_grad_order(config.meta)).grad_order == order


def test_model_conv_impl_key_is_checked():
  config = tiny_config()
  config.model.conv_impl = 'fft'
  with pytest.raises(configlib.ConfigError, match="'model.conv_impl' = 'fft' must be one of"):
    defaults.validate(config)

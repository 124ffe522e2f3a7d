"""The console scripts as a user meets them: `--help` of every program, exit statuses and one-line
errors."""

import subprocess
import sys

import pytest

from metaiqa_jax import configlib, storage
from metaiqa_jax.cli import programs
from metaiqa_jax.data import registry
from metaiqa_jax.train import loop, setup
import forked_cli
import test_programs

# name -> (entry point, words its --help must show besides the shared flags).
PROGRAMS = {
    'metaiqa-meta-train': ('programs.meta_train', 'Meta-trains'),
    'metaiqa-finetune': ('programs.finetune', 'Fine-tunes'),
    'metaiqa-evaluate': ('programs.evaluate', 'Scores a dataset'),
    'metaiqa-lodo': ('programs.lodo', 'Leave-one-distortion-out'),
    'metaiqa-demo': ('programs.demo', '--smoke'),
    'metaiqa-transfer': ('programs.transfer', '--smoke'),
    'metaiqa-score': ('score.run', '--weights'),
    'metaiqa-adapt': ('adapt.run', '--support'),
    'metaiqa-export': ('export.run', '--format'),
}

@pytest.fixture(scope='module')
def help_texts(tmp_path_factory):
  """{program name: (exit status, --help stdout)}, every program run in one forked process."""
  runs = [(f'metaiqa_jax.cli.{entry.split(".")[0]}', entry.split('.')[1], [name, '--help'])
          for name, (entry, _) in PROGRAMS.items()]
  results = forked_cli.run_forked(runs, tmp_path_factory.mktemp('help'), fd=1, timeout=120)
  return dict(zip(PROGRAMS, results))


@pytest.mark.parametrize('name', PROGRAMS)
def test_help_describes_the_program_with_an_example_and_its_flags(help_texts, name):
  status, text = help_texts[name]
  assert status == 0, text
  assert PROGRAMS[name][1] in text
  example = text.split('Example:\n', 1)[1].split('\n\n')[0]
  assert example.lstrip().startswith(name + ' ')
  flags = {'metaiqa-score': ('--weights', '--output'), 'metaiqa-export': ('--weights', '--output'),
           'metaiqa-adapt': ('--support', '--workdir', '--mos_range', '--[no]overwrite')}.get(
               name, ('--config:', '--workdir:', '--[no]distributed:'))
  for flag in flags:
    assert flag in text
  assert 'Try --helpfull' in text


@pytest.mark.parametrize('error, status', [
    (loop.NonFiniteLossError('meta-step 5: query loss is nan; stopping. The last good '
                             'checkpoint is step 4 in /w/checkpoints'), 2),
    (registry.DatasetError("config.finetune.source 'csv' (root '/d'): /d/x.csv:3: mos 'n/a' is "
                           'missing or not a number'), 2),
    (configlib.ConfigError("unknown config key 'meta.inner_stpes'"), 2),
    (loop.Preempted('SIGTERM received: stopped'), 143),
    (storage.StorageError('could not write step 4: no space left on device'), 74),
])
def test_errors_that_are_not_bugs_exit_with_one_line(capsys, error, status):
  def run():
    raise error
  with pytest.raises(SystemExit) as exit_info:
    programs.exit_on_errors('metaiqa-x', run)
  assert exit_info.value.code == status
  stderr = capsys.readouterr().err
  assert stderr.count('\n') == 1 and stderr.startswith('metaiqa-x: ') and str(error) in stderr


def test_a_bug_still_raises_with_its_traceback():
  def run():
    raise KeyError('bug')
  with pytest.raises(KeyError):
    programs.exit_on_errors('metaiqa-x', run)


def test_malformed_label_table_is_a_dataset_error_naming_key_and_line(tmp_path):
  (tmp_path / 'a.jpg').write_bytes(b'')
  (tmp_path / 'cid2013.csv').write_text('name,mos\na.jpg,n/a\n')
  config = test_programs.tiny_config()
  config.finetune.source = 'cid2013'
  config.finetune.root = str(tmp_path)
  with pytest.raises(registry.DatasetError,
                     match=r"config\.finetune\.source 'cid2013' .*cid2013\.csv:2"):
    setup.finetune_source(config.finetune)


def test_csv_source_takes_its_label_table_from_the_config(tmp_path):
  for name in ('a.jpg', 'b.jpg'):
    (tmp_path / name).write_bytes(b'')
  (tmp_path / 'mine.csv').write_text('image;score\na.jpg;3,5\nb.jpg;4\n')
  config = test_programs.tiny_config()
  config.finetune.source, config.finetune.root = 'csv', str(tmp_path)
  with pytest.raises(configlib.ConfigError, match=r'needs config\.finetune\.csv_path'):
    setup.finetune_source(config.finetune)
  config.finetune.csv_path = str(tmp_path / 'mine.csv')
  assert setup.finetune_source(config.finetune).metadata()['mos'].tolist() == [3.5, 4.0]


def test_split_file_that_does_not_fit_the_source_is_a_config_error(tmp_path):
  splits_file = tmp_path / 'splits.json'
  splits_file.write_text('{"version": 1, "splits": [{"train": [0], "val": [1], "test": [9]}]}')
  config = test_programs.tiny_config()
  config.finetune.split_file = str(splits_file)
  with pytest.raises(configlib.ConfigError, match=r'split 0 refers to record 9, but '
                                                  r"finetune.source 'livec' has 4"):
    setup.load_or_make_splits(config.finetune, list(range(4)), tmp_path, seed=0)

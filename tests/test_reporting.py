"""metaiqa_jax.train.reporting: jsonl + TensorBoard logs, resume truncation, report, plots."""

import builtins
import errno
import json
import os

import numpy as np
import pytest

from metaiqa_jax import metrics, storage
from metaiqa_jax.train import reporting

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def event_files(workdir):
  directory = os.path.join(workdir, 'tensorboard')
  return [os.path.join(directory, f) for f in os.listdir(directory) if 'tfevents' in f]


def test_log_writes_jsonl_and_event_file(tmp_path):
  with reporting.RunLogger(tmp_path) as run:
    run.log(1, 'train', {'loss': np.float32(0.25), 'lr': 1e-3})
    run.log(1, 'val', {'srocc': 0.5, 'plcc': float('nan')})
    # Flushed while the logger is still open: a killed run keeps what it logged.
    lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
    assert [json.loads(line)['split'] for line in lines] == ['train', 'val']
  entries = reporting.read_metrics(tmp_path)
  assert entries[0]['step'] == 1 and entries[0]['metrics'] == {'loss': 0.25, 'lr': 1e-3}
  assert entries[1]['metrics'] == {'srocc': 0.5, 'plcc': None}
  assert reporting.read_metrics(tmp_path, 'val') == [entries[1]]
  files = event_files(tmp_path)
  assert files and sum(os.path.getsize(f) for f in files) > 100


def test_resume_drops_later_steps_and_partial_line(tmp_path):
  with reporting.RunLogger(tmp_path) as run:
    for step in range(1, 6):
      run.log(step, 'train', {'loss': 1.0 / step})
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 6, "split": "tr')  # A kill in the middle of a line.
  with reporting.RunLogger(tmp_path, resume_step=3) as run:
    run.log(4, 'train', {'loss': 0.2})
  assert [e['step'] for e in reporting.read_metrics(tmp_path)] == [1, 2, 3, 4]
  with reporting.RunLogger(tmp_path) as run:
    run.truncate_after(2)
    run.log(3, 'train', {'loss': 0.3})
  assert [e['step'] for e in reporting.read_metrics(tmp_path)] == [1, 2, 3]


def test_non_primary_writes_nothing(tmp_path):
  with reporting.RunLogger(tmp_path, is_primary=False) as run:
    run.log(1, 'train', {'loss': 1.0})
  assert os.listdir(tmp_path) == []


def test_only_the_first_process_writes_reports_and_plots(tmp_path, monkeypatch):
  """In a multi-process run every process calls the writers; only process 0 writes files."""
  monkeypatch.setattr(reporting.jax, 'process_index', lambda: 1)
  path = reporting.write_report(tmp_path, {'srocc': 0.5})
  assert path == os.path.join(tmp_path, 'report.json')
  reporting.write_outputs(tmp_path, {'srocc': 0.5}, '| a |\n')
  reporting.plot_scatter(tmp_path / 'scatter.png', [0.1, 0.5, 0.9], [1.0, 2.0, 3.0])
  reporting.plot_curves(tmp_path / 'curves.png', [0, 1], {'a': [0.1, 0.2]}, 'x', 'y')
  reporting.plot_intervals(tmp_path / 'intervals.png', ['a'], [0.5], [0.1], 'y')
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match="curve 'bad' has 1 values for 2 x positions"):
    reporting.plot_curves(tmp_path / 'bad.png', [0, 1], {'bad': [1]}, 'x', 'y')


def test_report_roundtrip_is_atomic_json(tmp_path):
  report = {'srocc': np.float64(0.81), 'values': np.array([0.8, 0.82]), 'nan': float('nan'),
            'nested': {'n': np.int64(3), 'name': 'koniq'}}
  path = reporting.write_report(tmp_path, report)
  with open(path) as f:
    assert json.load(f) == {'srocc': 0.81, 'values': [0.8, 0.82], 'nan': None,
                            'nested': {'n': 3, 'name': 'koniq'}}
  assert os.listdir(tmp_path) == ['report.json']  # No temporary file left behind.


def test_plots_are_png(tmp_path):
  rng = np.random.default_rng(0)
  pred = rng.uniform(0, 1, 50)
  mos = metrics.logistic4(pred, 5, 1, 0.5, 0.1) + rng.normal(0, 0.1, 50)
  reporting.plot_scatter(tmp_path / 'scatter.png', pred, mos, metrics.fit_logistic(pred, mos))
  reporting.plot_curves(tmp_path / 'curves.png', [0, 1, 5], {'zero-shot': [0.3, 0.5, 0.6],
                                                             'tuned': [0.4, 0.6, 0.7]},
                        'adaptation steps', 'SROCC')
  for name in ('scatter.png', 'curves.png'):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000
  with pytest.raises(ValueError, match="curve 'bad' has 2 values for 3 x positions"):
    reporting.plot_curves(tmp_path / 'bad.png', [0, 1, 2], {'bad': [1, 2]}, 'x', 'y')


def test_markdown_table():
  table = reporting.markdown_table([{'split': 0, 'srocc': 0.81234}, {'split': 1}],
                                   ['split', 'srocc'])
  assert table == '| split | srocc |\n|---|---|\n| 0 | 0.812 |\n| 1 |  |\n'


def test_replace_generated_section_keeps_everything_else():
  text = 'intro\n<!-- BEGIN t -->\nold\nrows\n<!-- END t -->\nrest\n'
  assert (reporting.replace_generated_section(text, 't', '| a |\n')
          == 'intro\n<!-- BEGIN t -->\n| a |\n<!-- END t -->\nrest\n')
  with pytest.raises(ValueError, match='BEGIN other'):
    reporting.replace_generated_section(text, 'other', 'x')


class _FullDisk:
  """metrics.jsonl on a disk that fills up: a line of step `step` or later cannot be written."""

  def __init__(self, file, step):
    self.file, self.step = file, step

  def write(self, text):
    if json.loads(text)['step'] >= self.step:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return self.file.write(text)

  def __getattr__(self, name):
    return getattr(self.file, name)


def full_disk_from(step):
  """A replacement for `open` in `reporting`: the metrics.jsonl it appends to fills up at
  `step` (also used by tests/faults/)."""
  def open_(path, mode='r', **kwargs):
    file = builtins.open(path, mode, **kwargs)
    return _FullDisk(file, step) if mode == 'a' else file
  return open_


def test_full_disk_stops_logging_naming_the_file_step_and_checkpoint(tmp_path, monkeypatch):
  (tmp_path / 'checkpoints' / '4').mkdir(parents=True)
  monkeypatch.setattr(reporting, 'open', full_disk_from(5), raising=False)
  run = reporting.RunLogger(tmp_path)
  run.log(4, 'train', {'loss': 0.5})
  with pytest.raises(storage.StorageError) as error:
    run.log(5, 'train', {'loss': 0.4})
  assert str(error.value) == (
      f'could not write the log of step 5 to {tmp_path / "metrics.jsonl"}: No space left on '
      'device. Make room or fix the file system; the last complete checkpoint is step 4: '
      'running the same command again resumes from it')
  run.close()  # Closed already: nothing more to raise.
  assert [e['step'] for e in reporting.read_metrics(tmp_path)] == [4]


def test_full_disk_while_writing_the_report_names_it_and_keeps_the_old_one(tmp_path,
                                                                          monkeypatch):
  reporting.write_report(tmp_path, {'steps': 1})

  def no_space(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, 'fsync', no_space)
  with pytest.raises(OSError) as error:
    reporting.write_report(tmp_path, {'steps': 2})
  assert error.value.errno == errno.ENOSPC
  assert error.value.filename == str(tmp_path / 'report.json')
  assert storage.fault_reason(error.value) == 'No space left on device'
  assert os.listdir(tmp_path) == ['report.json']
  assert json.load(open(tmp_path / 'report.json')) == {'steps': 1}


def test_a_failed_close_raises_unless_another_error_ends_the_block(tmp_path, monkeypatch):
  def no_space(self):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(reporting.SummaryWriter, 'close', no_space)
  with pytest.raises(ValueError, match='the error to report'):
    with reporting.RunLogger(tmp_path / 'a'):
      raise ValueError('the error to report')
  with pytest.raises(storage.StorageError,
                     match=f'could not write the logs in {tmp_path / "b"}: No space left'):
    with reporting.RunLogger(tmp_path / 'b'):
      pass

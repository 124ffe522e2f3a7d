"""Hostile and mismatched weight files at the program entry points (the reader itself is tested
in tests/test_weights.py): `metaiqa-score --weights evil.pt` exits 2 with the refusal and runs
nothing; `config.model.init=evil.pt` and a PyTorch file of another width stop meta-training
before anything is compiled, naming the global or the first mismatched key.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.train import meta_train
from metaiqa_jax.weights import UnsafePickleError, WeightsFormatError
import test_programs
import test_weights


@pytest.fixture(scope='module')
def source():
  return test_programs.tiny_source()


def _evil_file(tmp_path, marker):
  return str(test_weights._write_zip(  # pylint: disable=protected-access
      tmp_path / 'evil.pt', test_weights._reduce_pickle(  # pylint: disable=protected-access
          'os', 'system', f'touch {marker}')))


def test_score_cli_refuses_code_running_weights(tmp_path):
  marker = tmp_path / 'marker'
  image = tmp_path / 'x.png'
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  result = subprocess.run(
      [sys.executable, '-m', 'metaiqa_jax.cli.score', '--weights', _evil_file(tmp_path, marker),
       str(image)], capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert ("metaiqa-score: error: cannot load weights: refusing to load: the pickle imports the "
          "standard-library global 'os.system'") in result.stderr
  assert not marker.exists()


def test_meta_train_refuses_code_running_init(tmp_path, source):
  marker = tmp_path / 'marker'
  config = test_programs.tiny_config()
  config.model.init = _evil_file(tmp_path, marker)
  with pytest.raises(UnsafePickleError, match="'os.system'"):
    meta_train.meta_train(config, str(tmp_path / 'run'), source=source)
  assert not marker.exists()
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


def test_meta_train_refuses_torch_init_of_another_width(tmp_path, source):
  config = test_programs.tiny_config()
  config.model.width = 0.125
  config.model.init = test_weights.fixture_path('metaiqa_module.pt')
  with pytest.raises(WeightsFormatError, match=r'shape mismatch for resnet_layer\.conv1\.weight: '
                     r'the file has \(4, 3, 7, 7\), the model expects \(8, 3, 7, 7\)'):
    meta_train.meta_train(config, str(tmp_path / 'run'), source=source)

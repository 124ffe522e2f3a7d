"""`metaiqa-export`: torch.save files written without torch, checked against torch-made fixtures.

export_expected.npz holds what torch 2.13 made of the files exported from `seeded_variables()`
(tests/fixtures/make_export_fixtures.py: strict `load_state_dict`, forward in eval mode); here the
same files are regenerated and compared with it, without torch.
"""

import importlib.util
import io
import os
import pickletools
import struct
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from metaiqa_jax.weights import load_torch_weights, read_torch_file
from metaiqa_jax.weights.export import FORMATS, export_torch_weights, torch_state_dict
from metaiqa_jax.weights.torch_save import STORAGE_ALIGNMENT, save_state_dict, state_dict_bytes

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
_SPEC = importlib.util.spec_from_file_location(
    'make_export_fixtures', os.path.join(FIXTURES, 'make_export_fixtures.py'))
make_export_fixtures = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(make_export_fixtures)


@pytest.fixture(scope='module')
def expected():
  return dict(np.load(os.path.join(FIXTURES, 'export_expected.npz')))


@pytest.fixture(scope='module')
def variables():
  return make_export_fixtures.seeded_variables()


@pytest.fixture(scope='module')
def exported(variables, tmp_path_factory):
  """{layout: (path of the exported file, the state dict written)}."""
  folder = tmp_path_factory.mktemp('export')
  return {layout: (folder / f'{layout}.pth',
                   export_torch_weights(variables, folder / f'{layout}.pth', layout))
          for layout in FORMATS}


def _assert_same_tensors(actual, expected_state):
  assert list(actual) == list(expected_state)
  for key, value in expected_state.items():
    assert actual[key].dtype == value.dtype and actual[key].shape == value.shape, key
    assert actual[key].tobytes() == value.tobytes(), key


@pytest.mark.parametrize('layout', FORMATS)
def test_safe_reader_reads_exports_back_bit_exactly(layout, exported):
  path, state = exported[layout]
  _assert_same_tensors(read_torch_file(path), state)


@pytest.mark.parametrize('layout', ['pyiqa', 'official'])
def test_whole_model_exports_import_to_the_same_variables(layout, exported, variables):
  back = load_torch_weights(exported[layout][0])
  assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(variables)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, variables)


def test_torchvision_export_is_the_official_backbone(exported, variables, caplog):
  caplog.set_level('WARNING')
  state = exported['torchvision'][1]
  official = exported['official'][1]
  backbone = {k[len('resnet_layer.'):]: v for k, v in official.items()
              if k.startswith('resnet_layer.')}
  _assert_same_tensors(state, backbone)
  torch_state_dict(variables, 'torchvision')
  assert 'MetaIQA head (16, 8) is left out' in caplog.text


@pytest.mark.parametrize('layout', FORMATS)
def test_torch_loaded_exactly_these_files(layout, exported, expected):
  """The bytes and tensors are those that torch loaded strictly when the fixture was made."""
  path, _ = exported[layout]
  assert make_export_fixtures.file_digest(path) == str(expected[f'{layout}_file_sha256']), (
      'the exported bytes changed: rerun tests/fixtures/make_export_fixtures.py with torch to '
      'check that torch still loads them')
  assert make_export_fixtures.tensor_digest(read_torch_file(path)) == str(
      expected[f'{layout}_tensor_sha256'])


def test_forward_matches_torch_on_the_exported_files(variables, expected):
  inputs = np.load(make_export_fixtures.INPUTS)['inputs_nhwc']
  logits, scores = make_export_fixtures.our_forward(variables, inputs)
  for layout in FORMATS:
    errors = {'logits': np.abs(logits - expected[f'{layout}_logits']).max()}
    if layout != 'torchvision':
      errors['scores'] = np.abs(scores - expected[f'{layout}_scores']).max()
    print(f'{layout}: max |ours - torch| ' + ', '.join(f'{k} {v:.2e}' for k, v in errors.items()))
    assert max(errors.values()) < make_export_fixtures.TOLERANCE


@pytest.mark.parametrize('layout,name', [('pyiqa', 'pyiqa_metaiqa.pth'),
                                         ('official', 'metaiqa_module.pt'),
                                         ('torchvision', 'torchvision_resnet18.pth')])
def test_torch_made_file_round_trips_bit_exactly(layout, name):
  """torch file -> our variables -> export: torch's `state_dict()` keys in its order, and the
  same tensors bit for bit (`num_batches_tracked` aside: we do not count batches, and write 0).

  make_torch_fixtures.py built pyiqa_metaiqa.pth from `resnet_layer.state_dict()` and
  `net.state_dict()` in that order, then appended pyiqa's buffers (`MetaIQA.state_dict()` lists
  them first); metaiqa_module.pt (a pickled `Net`) holds the same tensors.
  """
  if layout == 'torchvision':
    original = read_torch_file(os.path.join(FIXTURES, name))
  else:
    pyiqa = read_torch_file(os.path.join(FIXTURES, 'pyiqa_metaiqa.pth'))['params']
    networks = {k: v for k, v in pyiqa.items() if k not in ('mean', 'std')}
    original = ({'mean': pyiqa['mean'], 'std': pyiqa['std']} | networks if layout == 'pyiqa'
                else {k.replace('head.', 'net.', 1): v for k, v in networks.items()})
  state = torch_state_dict(load_torch_weights(os.path.join(FIXTURES, name)), layout)
  assert list(state) == list(original)
  for key, value in state.items():
    if key.endswith('num_batches_tracked'):
      assert value.dtype == np.int64 and value.shape == () and value == 0
    else:
      assert value.dtype == original[key].dtype, key
      assert value.tobytes() == np.ascontiguousarray(original[key]).tobytes(), key


def test_file_layout_is_torch_saves():
  state = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'n': np.array(3, np.int64)}
  data = state_dict_bytes(state)
  archive = zipfile.ZipFile(io.BytesIO(data))
  assert archive.namelist() == [
      'archive/data.pkl', 'archive/.format_version', 'archive/.storage_alignment',
      'archive/byteorder', 'archive/data/0', 'archive/data/1', 'archive/version']
  assert archive.read('archive/version') == b'3\n'
  assert archive.read('archive/data/0') == state['w'].astype('<f4').tobytes()
  for info in archive.infolist():
    assert info.compress_type == zipfile.ZIP_STORED
    name_length, extra_length = struct.unpack('<HH', data[info.header_offset + 26:][:4])
    assert (info.header_offset + 30 + name_length + extra_length) % STORAGE_ALIGNMENT == 0
  globals_ = {arg for op, arg, _ in pickletools.genops(archive.read('archive/data.pkl'))
              if op.name == 'GLOBAL'}
  assert globals_ == {'collections OrderedDict', 'torch._utils _rebuild_tensor_v2',
                      'torch FloatStorage', 'torch LongStorage'}
  assert state_dict_bytes(state) == data


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
  path = tmp_path / 'weights.pth'
  path.write_bytes(b'precious')
  with pytest.raises(FileExistsError, match='weights.pth exists'):
    save_state_dict(path, {'w': np.zeros(2, np.float32)})
  assert path.read_bytes() == b'precious'
  save_state_dict(path, {'w': np.zeros(2, np.float32)}, overwrite=True)
  np.testing.assert_array_equal(read_torch_file(path)['w'], np.zeros(2, np.float32))
  assert os.listdir(tmp_path) == ['weights.pth']


def test_bad_inputs_are_refused(variables):
  with pytest.raises(ValueError, match="unknown layout 'onnx'"):
    torch_state_dict(variables, 'onnx')
  params = jax.tree_util.tree_map(lambda x: x, variables['params'])
  params['backbone']['fc']['extra'] = np.zeros(2, np.float32)
  with pytest.raises(ValueError, match=r"params missing \[\], unexpected \['backbone/fc/extra'\]"):
    torch_state_dict({**variables, 'params': params}, 'pyiqa')
  params = jax.tree_util.tree_map(lambda x: x, variables['params'])
  params['head']['bn2']['scale'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r'params/head/bn2/scale has shape \(3,\), the model \(8,\)'):
    torch_state_dict({**variables, 'params': params}, 'official')
  with pytest.raises(ValueError, match='complex64 has no torch storage type'):
    state_dict_bytes({'z': np.zeros(2, np.complex64)})


def _export_cli(*args):
  return subprocess.run([sys.executable, '-m', 'metaiqa_jax.cli.export', *args],
                        capture_output=True, text=True, check=False)


def test_cli_help():
  result = _export_cli('--help')
  assert result.returncode == 0, result.stderr
  assert 'in the key layout of another implementation' in result.stdout
  assert 'Example:\n  metaiqa-export --weights' in result.stdout
  assert '--overwrite' in result.stdout


def test_cli_exports_and_never_overwrites(tmp_path):
  source = os.path.join(FIXTURES, 'metaiqa_module.pt')
  output = tmp_path / 'official.pth'
  result = _export_cli('--weights', source, '--format', 'official', '--output', str(output))
  assert result.returncode == 0, result.stderr
  assert f'wrote {output}: official layout, 140 tensors' in result.stderr
  _assert_same_tensors(read_torch_file(output),
                       torch_state_dict(load_torch_weights(source), 'official'))
  written = output.read_bytes()

  result = _export_cli('--weights', source, '--format', 'pyiqa', '--output', str(output))
  assert result.returncode == 2
  assert result.stderr == (f'metaiqa-export: error: {output} exists; pass --overwrite to '
                           'replace it\n')
  assert output.read_bytes() == written


def test_efficientnet_models_are_refused_naming_the_backbone():
  from metaiqa_jax.models import create_model, init_variables
  model = create_model('efficientnet_lite0', head_features=(8, 4), head_input='stats')
  lite0 = init_variables(model, jax.random.key(0), 32)
  for layout in FORMATS:
    with pytest.raises(ValueError, match='efficientnet_lite0 model.*ResNet MetaIQA only'):
      torch_state_dict(lite0, layout)

"""Flax ResNet + MetaIQA head against PyTorch (committed fixtures), eval and training mode."""

import os

import jax
import numpy as np
import pytest

from metaiqa_jax.models import create_model, infer_model_config, init_variables, make_apply_fn
from metaiqa_jax.weights import load_torch_weights

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


@pytest.fixture(scope='module')
def expected():
  return dict(np.load(os.path.join(FIXTURES, 'expected.npz')))


@pytest.fixture(scope='module')
def variables():
  return load_torch_weights(os.path.join(FIXTURES, 'metaiqa_module.pt'))


def _flax_stat_path(torch_key: str) -> tuple[str, ...]:
  """'resnet_layer.layer2.0.downsample.1.running_var' -> ('backbone', 'layer2_0',
  'downsample_bn', 'var'); 'net.bn1.running_mean' -> ('head', 'bn1', 'mean')."""
  part, *names, stat = torch_key.split('.')
  stat = stat.replace('running_', '')
  if names[0].startswith('layer'):
    block = [f'{names[0]}_{names[1]}']
    rest = names[2:]
    rest = ['downsample_bn'] if rest[:1] == ['downsample'] else rest
    names = block + rest
  return ('backbone' if part == 'resnet_layer' else 'head', *names, stat)


def test_eval_mode_matches_torch(variables, expected):
  config = infer_model_config(variables)
  apply_fn = make_apply_fn(create_model(config.arch, config.width, config.num_classes,
                                        config.head_features))
  scores, state = jax.jit(apply_fn, static_argnums=2)(variables, expected['inputs_nhwc'], False)
  np.testing.assert_allclose(scores, expected['scores'], atol=1e-4)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state['batch_stats'],
                         variables['batch_stats'])


def test_training_mode_batchnorm_matches_torch(variables, expected):
  """One train-mode step (dropout off): outputs and every running statistic after the update
  (momentum 0.1, unbiased variance) equal PyTorch's."""
  config = infer_model_config(variables)
  model = create_model(config.arch, config.width, config.num_classes, config.head_features,
                       dropout_rate=0.0)
  apply_fn = make_apply_fn(model)
  scores, state = jax.jit(apply_fn, static_argnums=2)(
      variables, expected['inputs_nhwc'], True, {'dropout': jax.random.PRNGKey(0)})
  np.testing.assert_allclose(scores, expected['train_scores'], atol=1e-4)
  stat_keys = [k for k in expected if k.startswith('train_stats/')]
  assert len(stat_keys) == 2 * (20 + 2)  # 20 BatchNorm2d in ResNet-18 + 2 BatchNorm1d in the head
  for key in stat_keys:
    node = state['batch_stats']
    for name in _flax_stat_path(key[len('train_stats/'):]):
      node = node[name]
    np.testing.assert_allclose(node, expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize('arch,width,head', [('resnet18', 0.0625, (16, 8)),
                                             ('resnet34', 0.0625, (8,)),
                                             ('resnet50', 0.0625, (16, 8))])
def test_infer_model_config_round_trip(arch, width, head):
  model = create_model(arch, width, num_classes=10, head_features=head)
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), image_size=32))
  config = infer_model_config(shapes)
  assert (config.arch, config.width, config.num_classes, config.head_features) == (
      arch, width, 10, head)


def test_unknown_arch_is_rejected():
  with pytest.raises(ValueError, match="unknown arch 'resnet101'"):
    create_model('resnet101')

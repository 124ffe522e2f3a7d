"""`adapt`: few-shot fine-tuning lowers the support loss, respects `adapt`, updates BatchNorm; on
a frozen backbone it trains the head on the features the full model computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax import adaptation
from metaiqa_jax.adaptation import adapt
from metaiqa_jax.models import backbones, create_model, init_variables
from metaiqa_jax.preprocess import InputSpec, prepare_images

IMAGE_SIZE = 32


@pytest.fixture(scope='module')
def tiny():
  model = create_model('resnet18', width=0.125, num_classes=10, head_features=(16, 8))
  variables = init_variables(model, jax.random.key(0), IMAGE_SIZE)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            for h, w in ((40, 50), (32, 32), (64, 48), (35, 35), (50, 40))]
  images.append(rng.random((45, 45, 3)).astype(np.float32))  # float in [0, 1]
  mos = rng.uniform(0.1, 0.9, len(images)).astype(np.float32)
  return model, variables, images, mos


def eval_loss(model, variables, images, mos):
  """Eval-mode (running statistics) MSE on the support set, computed with the module itself."""
  pred = model.apply(variables, jnp.asarray(prepare_images(images, IMAGE_SIZE)), train=False)
  return float(jnp.mean((pred - mos) ** 2))


def test_adapt_lowers_support_loss_and_updates_running_stats(tiny, tmp_path):
  model, variables, images, mos = tiny
  path = tmp_path / 'support.png'
  Image.fromarray(images[0]).save(path)
  support = [str(path)] + images[1:]
  before = eval_loss(model, variables, support, mos)
  adapted = adapt(variables, support, mos, steps=25, lr=1e-3, head_lr=1e-2,
                  image_size=IMAGE_SIZE)  # model inferred from the variables
  after = eval_loss(model, adapted, support, mos)
  print(f'adapt support MSE {before:.4f} -> {after:.4f}')
  assert after < 0.5 * before
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), variables['batch_stats'],
                       adapted['batch_stats'])
  assert min(jax.tree.leaves(moved)) > 0, 'some running statistics were not updated'


def test_adapt_head_only_and_minibatches(tiny):
  model, variables, images, mos = tiny
  adapted = adapt(variables, images, mos, model=model, steps=4, lr=1e-3, head_lr=1e-2,
                  adapt='head', image_size=IMAGE_SIZE, batch_size=4, seed=1)
  same = jax.tree.map(jnp.array_equal, variables['params']['backbone'],
                      adapted['params']['backbone'])
  assert all(jax.tree.leaves(same))
  assert not jnp.array_equal(variables['params']['head']['fc1']['kernel'],
                             adapted['params']['head']['fc1']['kernel'])


def test_adapt_rejects_bad_support(tiny):
  model, variables, images, mos = tiny
  with pytest.raises(ValueError, match='one score per support image'):
    adapt(variables, images, mos[:-1], model=model, image_size=IMAGE_SIZE)
  with pytest.raises(ValueError, match='item 2 is 7'):
    adapt(variables, images, np.r_[mos[:2], 7.0, mos[3:]], model=model, image_size=IMAGE_SIZE)
  with pytest.raises(ValueError, match='at least 2'):
    adapt(variables, images[:1], mos[:1], model=model, image_size=IMAGE_SIZE)
  with pytest.raises(ValueError, match='batch_size'):
    adapt(variables, images, mos, model=model, image_size=IMAGE_SIZE, batch_size=100)


def test_support_as_pair_mapping_or_two_arguments_is_the_same_call(tiny):
  model, variables, images, mos = tiny
  kwargs = dict(model=model, steps=2, lr=1e-3, image_size=IMAGE_SIZE)
  two = adapt(variables, images, mos, **kwargs)
  for support in ((images, mos), {'images': images, 'mos': mos}):
    same = jax.tree.map(jnp.array_equal, two, adapt(variables, support, **kwargs))
    assert all(jax.tree.leaves(same))
  with pytest.raises(ValueError, match='missing'):
    adapt(variables, {'images': images}, **kwargs)


@pytest.fixture(scope='module')
def frozen():
  """A random EfficientNet-Lite0 frozen whole (head on 'stats') and 2 x 2 grids of 32 px crops."""
  model = create_model('efficientnet_lite0', head_features=(16, 8), head_input='stats',
                       freeze=backbones.get('efficientnet_lite0').max_freeze)
  return model, init_variables(model, jax.random.key(1), IMAGE_SIZE), InputSpec(
      IMAGE_SIZE, resize_to=0, eval_grid=2)


def test_frozen_backbone_adapts_the_head_on_features(tiny, frozen):
  _, _, images, mos = tiny
  model, variables, inputs = frozen
  features = adaptation.support_features(model, variables, images, inputs)
  assert features.shape[:2] == (len(images), 4)
  # Features are the backbone's on each view, as the full model's eval pass sees them.
  views = np.concatenate([inputs.eval(image) for image in images[:2]])
  direct = jax.jit(lambda v, x: model.apply(v, x, method=lambda m, x: m.backbone(x, False)))(
      variables, views)  # jit: Lite0 op by op takes many times longer
  np.testing.assert_allclose(features[:2].reshape(8, -1), direct, rtol=1e-5, atol=1e-5)
  full = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, views)
  full = full.reshape(2, 4).mean(axis=1)
  np.testing.assert_allclose(adaptation.head_scores(model, variables, features[:2]), full,
                             atol=1e-6)

  adapted = adapt(variables, (images, mos), model=model, inputs=inputs, steps=100, lr=1e-2)
  direct = adaptation.adapt_head(model, variables, features, mos, steps=100, lr=1e-2)
  assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, adapted, direct)))
  before = np.mean((adaptation.head_scores(model, variables, features) - mos) ** 2)
  after = np.mean((adaptation.head_scores(model, adapted, features) - mos) ** 2)
  assert after < 0.5 * before
  same = jax.tree.map(jnp.array_equal, variables['params']['backbone'],
                      adapted['params']['backbone'])
  assert all(jax.tree.leaves(same))
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       variables['batch_stats']['head'], adapted['batch_stats']['head'])
  assert min(jax.tree.leaves(moved)) > 0

  held = adaptation.held_out_srocc(model, variables, features, mos, folds=3, steps=5)
  assert set(held) == {'before', 'after', 'folds'} and -1 <= held['after'] <= 1

"""`adapt`: few-shot fine-tuning lowers the support loss, respects `adapt`, updates BatchNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metaiqa_jax.adaptation import adapt
from metaiqa_jax.models import create_model, init_variables
from metaiqa_jax.preprocess import prepare_images

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

"""Fast paths equal the plain ones: `Conv(impl='matmul'|'auto')` (im2col + matmul; shifted
multiply-adds for depthwise convolutions) vs XLA's convolution, and the slice max-pool vs
`nn.max_pool`. (The scorer's fast paths, EfficientNet-Lite with its BatchNorms folded into the
convolutions and small device calls, are pinned by tests/test_quality_model.py: the shipped
model scores what its build recorded with the plain model.)

References: a direct numpy convolution (loops over output pixels) for the forward pass,
`lax.conv_general_dilated`'s own first and second derivatives for the gradients, and Flax's
`reduce_window` max-pool.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaiqa_jax.models import create_model, init_variables, make_apply_fn
from metaiqa_jax.models.layers import (CONV_IMPLS, Conv, choose_conv_impl, conv_padding,
                                       default_conv_impl)
from metaiqa_jax.models.resnet import max_pool_3x3_s2

# (in_hw, in_ch, features, kernel, stride, padding): every kind of conv in ResNet-18/50, at odd
# sizes where the stride does not divide the padded input.
SHAPES = [(9, 3, 4, 7, 2, 3), (7, 4, 4, 3, 1, 1), (7, 4, 6, 3, 2, 1), (7, 4, 6, 1, 2, 0),
          (5, 6, 3, 1, 1, 0), (2, 5, 4, 3, 1, 1)]


def _numpy_conv(x, kernel, stride, padding):
  """Direct NHWC x HWIO convolution in float64."""
  k = kernel.shape[0]
  x = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out_h, out_w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      window = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j] = np.einsum('nhwc,hwcf->nf', window, kernel)
  return out


def _assert_close(actual, desired, rtol):
  """float32 agreement relative to the array's scale (sums of many terms cancel near zero; a
  gradient that is zero in exact arithmetic, like that of a bias before BatchNorm, is ~1e-9)."""
  desired = np.asarray(desired)
  np.testing.assert_allclose(actual, desired, rtol=rtol,
                             atol=rtol * np.abs(desired).max() + 1e-7)


def _conv_and_inputs(shape, impl, grad_order=1):
  hw, cin, features, k, s, p = shape
  conv = Conv(features, k, s, p, impl=impl, grad_order=grad_order)
  x = jax.random.normal(jax.random.key(0), (2, hw, hw, cin), jnp.float32)
  return conv, x, conv.init(jax.random.key(1), x)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('impl', CONV_IMPLS)
def test_forward_equals_direct_convolution(shape, impl):
  conv, x, params = _conv_and_inputs(shape, impl)
  expected = _numpy_conv(np.asarray(x), np.asarray(params['params']['kernel']), *shape[4:])
  np.testing.assert_allclose(conv.apply(params, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape', SHAPES)
def test_first_and_second_derivatives_equal_xla(shape):
  """Gradients w.r.t. input and kernel, and a Hessian-vector product (what second-order MAML
  differentiates), of the matmul path equal those of XLA's convolution."""
  results = {}
  for impl in ('xla', 'matmul'):
    conv, x, params = _conv_and_inputs(shape, impl)
    loss = lambda params, x: jnp.sum(jnp.tanh(conv.apply(params, x)) ** 2)
    grad = jax.grad(loss, argnums=(0, 1))
    tangent = jax.tree.map(jnp.ones_like, (params, x))
    hvp = jax.jvp(grad, (params, x), tangent)[1]
    results[impl] = (grad(params, x), hvp)
  jax.tree.map(lambda a, b: _assert_close(a, b, 1e-5), results['matmul'], results['xla'])


# (in_hw, channels, kernel, stride): EfficientNet-Lite's depthwise kinds, TensorFlow-SAME padded,
# at sizes where the padding is odd.
DEPTHWISE = [(7, 4, 3, 1), (7, 4, 3, 2), (8, 3, 5, 2)]


def _numpy_depthwise(x, kernel, stride):
  """Direct NHWC depthwise convolution (kernel `(k, k, 1, C)`), TensorFlow-SAME, float64."""
  k = kernel.shape[0]
  pads = [conv_padding(x.shape[axis], k, stride, 'same') for axis in (1, 2)]
  x = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
  out_h, out_w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, x.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      window = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j] = np.einsum('nhwc,hwc->nc', window, kernel[:, :, 0, :])
  return out


@pytest.mark.parametrize('hw,channels,kernel,stride', DEPTHWISE)
def test_depthwise_multiply_adds_equal_direct_convolution_and_xla_gradients(hw, channels, kernel,
                                                                            stride):
  """The shifted multiply-adds every depthwise convolution runs as ('matmul'; 'auto' picks them)
  against a direct convolution, and their gradients against XLA's grouped convolution's."""
  x = jax.random.normal(jax.random.key(0), (2, hw, hw, channels), jnp.float32)
  params = {'params': {'kernel': jax.random.normal(jax.random.key(1),
                                                   (kernel, kernel, 1, channels))}}

  def output_and_grads(impl):
    conv = Conv(channels, kernel, stride, 'same', impl=impl, groups=channels)
    loss = lambda params, x: jnp.sum(jnp.tanh(conv.apply(params, x)) ** 2)
    return jax.jit(lambda params, x: (conv.apply(params, x),
                                      jax.grad(loss, argnums=(0, 1))(params, x)))(params, x)

  results = {impl: output_and_grads(impl) for impl in ('xla', 'matmul')}
  expected = _numpy_depthwise(np.asarray(x), np.asarray(params['params']['kernel']), stride)
  for impl in results:
    np.testing.assert_allclose(results[impl][0], expected, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: _assert_close(a, b, 1e-5), results['matmul'][1], results['xla'][1])


def test_whole_model_equal_in_eval_and_train_mode():
  """Same parameters for both impls; eval scores, train scores, running statistics and the
  parameter gradient of a tiny MetaIQA agree."""
  x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3), jnp.float32)
  y = jnp.linspace(0.2, 0.8, 4)
  outputs = {}
  for impl in ('xla', 'matmul'):
    model = create_model('resnet18', 0.125, num_classes=10, head_features=(8,),
                         dropout_rate=0.0, conv_impl=impl)
    variables = init_variables(model, jax.random.key(0), 32)
    apply_fn = make_apply_fn(model)

    def loss(params, variables=variables, apply_fn=apply_fn):
      pred, state = apply_fn(variables | {'params': params}, x, True)
      return jnp.mean((pred - y) ** 2), (pred, state)

    grads, (train_pred, state) = jax.jit(jax.grad(loss, has_aux=True))(variables['params'])
    eval_pred, _ = jax.jit(apply_fn, static_argnums=2)(variables, x, False)
    outputs[impl] = (variables, eval_pred, train_pred, state, grads)
  jax.tree.map(np.testing.assert_array_equal, outputs['matmul'][0], outputs['xla'][0])
  jax.tree.map(lambda a, b: _assert_close(a, b, 1e-4), outputs['matmul'][1:4], outputs['xla'][1:4])
  # Train-mode BatchNorm over 4 values per channel (the 1x1 last stage) amplifies float32
  # rounding in the backward pass; a wrong convolution would differ by O(1).
  jax.tree.map(lambda a, b: _assert_close(a, b, 2e-3), outputs['matmul'][4], outputs['xla'][4])


def test_unknown_impl_is_rejected():
  with pytest.raises(ValueError, match="conv_impl must be one of .* got 'fft'"):
    create_model('resnet18', 0.125, conv_impl='fft')
  conv = Conv(4, 3, impl='fft')
  with pytest.raises(ValueError, match="conv impl must be one of .* got 'fft'"):
    conv.init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))


# (in_hw, kernel, stride, grad_order, expected form): the per-layer rule at its boundaries.
AUTO_CASES = [(2, 3, 1, 0, 'matmul'),   # 2x2 output: the matmul form, whatever the use
              (7, 3, 1, 1, 'matmul'),   # 7x7 output: still the matmul
              (8, 3, 1, 0, 'xla'),      # 8x8 output, stride 1: XLA forward ...
              (8, 3, 1, 1, 'xla'),      # ... and for training
              (8, 3, 1, 2, 'matmul'),   # ... but the matmul when differentiated twice
              (16, 3, 2, 0, 'matmul'),  # strided 3x3, 8x8 output: the matmul
              (16, 1, 2, 1, 'matmul'),  # strided 1x1 (projection shortcut)
              (17, 7, 2, 1, 'xla')]     # the 7x7/2 stem, 9x9 output: XLA


@pytest.mark.parametrize('in_hw,kernel,stride,grad_order,expected', AUTO_CASES)
def test_auto_follows_the_rule_bit_for_bit(in_hw, kernel, stride, grad_order, expected):
  """'auto' computes exactly what the implementation `choose_conv_impl` names computes."""
  shape = (in_hw, 3, 4, kernel, stride, kernel // 2)
  out_hw = (in_hw + 2 * (kernel // 2) - kernel) // stride + 1
  assert choose_conv_impl(kernel, stride, out_hw * out_hw, grad_order) == expected
  out = {}
  for impl in CONV_IMPLS:
    conv, x, params = _conv_and_inputs(shape, impl, grad_order)
    out[impl] = np.asarray(jax.jit(conv.apply)(params, x))
  np.testing.assert_array_equal(out['auto'], out[expected])
  assert not np.array_equal(out['xla'], out['matmul'])  # the two forms are distinguishable


def test_grad_order_is_checked():
  with pytest.raises(ValueError, match='grad_order must be one of .* got 3'):
    create_model('resnet18', 0.125, grad_order=3)


def test_defaults_per_backend():
  assert default_conv_impl('cpu') == 'auto'
  assert default_conv_impl('gpu') == 'xla' and default_conv_impl('tpu') == 'xla'


@pytest.mark.parametrize('hw', [9, 10])
def test_slice_max_pool_equals_reduce_window(hw):
  x = jax.random.normal(jax.random.key(3), (2, hw, hw, 5), jnp.float32)
  reference = lambda x: nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  np.testing.assert_array_equal(max_pool_3x3_s2(x), reference(x))
  cotangent = jax.random.normal(jax.random.key(4), reference(x).shape)
  grads = [jax.vjp(f, x)[1](cotangent)[0] for f in (max_pool_3x3_s2, reference)]
  np.testing.assert_array_equal(*grads)

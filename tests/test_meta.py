"""Tests of metaiqa_jax.meta against independent references.

References: central finite differences in float64, closed forms (Reptile on a quadratic), a
Python loop over tasks built from `inner_adapt` and `jax.grad`, hand-computed BatchNorm updates.
The tiny models here are plain functions (`mlp_*`, `cnn_*`), also used by test_parallel.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from metaiqa_jax import meta, optim
from metaiqa_jax.models import create_model, init_variables, make_apply_fn
from metaiqa_jax.models.metaiqa import jitted_backbone


# ---------------------------------------------------------------- tiny models (pure functions)

def mlp_init(rng, in_dim=3, hidden=4, dtype=jnp.float32):
  k1, k2 = jax.random.split(rng)
  return {'params': {'hidden': {'kernel': jax.random.normal(k1, (in_dim, hidden), dtype),
                                'bias': jnp.full((hidden,), 0.1, dtype)},
                     'out': {'kernel': jax.random.normal(k2, (hidden,), dtype) * 0.5,
                             'bias': jnp.zeros((), dtype)}},
          'batch_stats': {}}


def mlp_apply(variables, x, train, rngs=None):
  """(n, in_dim) -> (n,); smooth (tanh), no state."""
  del train, rngs
  p = variables['params']
  h = jnp.tanh(x @ p['hidden']['kernel'] + p['hidden']['bias'])
  return h @ p['out']['kernel'] + p['out']['bias'], {'batch_stats': {}}


def cnn_init(rng, channels=2, features=3, dtype=jnp.float32):
  k1, k2 = jax.random.split(rng)
  return {'params': {'conv': {'kernel': jax.random.normal(k1, (3, 3, channels, features), dtype)
                              * 0.3},
                     'bn': {'scale': jnp.ones((features,), dtype),
                            'bias': jnp.full((features,), 0.1, dtype)},
                     'head': {'kernel': jax.random.normal(k2, (features,), dtype) * 0.5,
                              'bias': jnp.zeros((), dtype)}},
          'batch_stats': {'bn': {'mean': jnp.zeros((features,), dtype),
                                 'var': jnp.ones((features,), dtype)}}}


def cnn_apply(variables, x, train, rngs=None, dropout_rate=0.0, momentum=0.1):
  """(n, H, W, C) -> (n,): 3x3 conv, BatchNorm (PyTorch semantics), tanh, mean pool, dropout,
  dense. Training mode normalises with batch statistics and updates the running ones."""
  p, stats = variables['params'], variables['batch_stats']['bn']
  y = jax.lax.conv_general_dilated(x, p['conv']['kernel'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  if train:
    mean, var = jnp.mean(y, axis=(0, 1, 2)), jnp.var(y, axis=(0, 1, 2))
    n = y.size // y.shape[-1]
    stats = {'mean': (1 - momentum) * stats['mean'] + momentum * mean,
             'var': (1 - momentum) * stats['var'] + momentum * var * n / (n - 1)}
  else:
    mean, var = stats['mean'], stats['var']
  y = (y - mean) / jnp.sqrt(var + 1e-5) * p['bn']['scale'] + p['bn']['bias']
  h = jnp.mean(jnp.tanh(y), axis=(1, 2))
  if train and dropout_rate:
    keep = jax.random.bernoulli(rngs['dropout'], 1 - dropout_rate, h.shape)
    h = jnp.where(keep, h / (1 - dropout_rate), 0)
  return h @ p['head']['kernel'] + p['head']['bias'], {'batch_stats': {'bn': stats}}


def make_tasks(rng, num_tasks, n_support, n_query, example_shape, dtype=jnp.float32):
  ks = jax.random.split(rng, 4)
  shape = lambda n: (num_tasks, n) + tuple(example_shape)
  return {'support': (jax.random.normal(ks[0], shape(n_support), dtype),
                      jax.random.uniform(ks[1], (num_tasks, n_support), dtype)),
          'query': (jax.random.normal(ks[2], shape(n_query), dtype),
                    jax.random.uniform(ks[3], (num_tasks, n_query), dtype))}


def max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------- finite differences (float64)

def _fd_relative_error(apply_fn, variables, tasks, steps, inner_lr, learn_inner_lr=False):
  """max |analytic - central FD| / max |FD| of the maml meta-gradient (params, or inner_lr)."""
  opts = dict(inner_steps=steps, algorithm='maml', task_map='unroll',
              learn_inner_lr=learn_inner_lr)
  loss, grads, aux = jax.jit(functools.partial(meta.meta_grad, apply_fn, **opts))(
      variables, tasks, inner_lr=inner_lr)
  if learn_inner_lr:
    target, analytic = inner_lr, aux['inner_lr_grads']
    loss_of = lambda t: meta.meta_grad(apply_fn, variables, tasks, inner_lr=t, **opts)[0]
  else:
    target, analytic = variables['params'], grads
    loss_of = lambda t: meta.meta_grad(apply_fn, variables | {'params': t}, tasks,
                                       inner_lr=inner_lr, **opts)[0]
  flat, unravel = ravel_pytree(target)
  h = 1e-5
  eye = jnp.eye(flat.size, dtype=flat.dtype) * h
  batched = jax.jit(jax.vmap(lambda f: loss_of(unravel(f))))
  fd = (batched(flat + eye) - batched(flat - eye)) / (2 * h)
  analytic_flat = ravel_pytree(analytic)[0]
  assert analytic_flat.dtype == jnp.float64
  assert np.isfinite(float(loss))
  return float(jnp.max(jnp.abs(analytic_flat - fd)) / jnp.max(jnp.abs(fd)))


@pytest.mark.parametrize('steps', [1, 3])
@pytest.mark.parametrize('model', ['mlp', 'cnn_bn'])
def test_maml_meta_gradient_matches_finite_differences(model, steps):
  with jax.enable_x64(True):
    rng = jax.random.key(0)
    if model == 'mlp':
      variables = mlp_init(rng, dtype=jnp.float64)
      tasks = make_tasks(jax.random.key(1), 2, 5, 4, (3,), jnp.float64)
      apply_fn = mlp_apply
    else:
      variables = cnn_init(rng, dtype=jnp.float64)
      tasks = make_tasks(jax.random.key(1), 2, 3, 3, (4, 4, 2), jnp.float64)
      apply_fn = cnn_apply
    error = _fd_relative_error(apply_fn, variables, tasks, steps, inner_lr=0.3)
  print(f'maml FD max relative error ({model}, K={steps}): {error:.2e}')
  assert error < 1e-6


def test_shared_batch_norm_meta_gradient_matches_a_direct_computation():
  """batch_norm='shared': every pass normalised with the pooled meta-batch's statistics,
  differentiated through them; written out here with plain jax.grad."""
  with jax.enable_x64(True):
    variables = cnn_init(jax.random.key(0), dtype=jnp.float64)
    tasks = make_tasks(jax.random.key(1), 2, 3, 3, (4, 4, 2), jnp.float64)
    lr = 0.3

    def reference_loss(params):
      pooled = jnp.concatenate([tasks[p][0].reshape((-1, 4, 4, 2)) for p in ('support',
                                                                              'query')])
      y = jax.lax.conv_general_dilated(pooled, params['conv']['kernel'], (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      n = y.size // y.shape[-1]
      stats = {'bn': {'mean': jnp.mean(y, axis=(0, 1, 2)),
                      'var': jnp.var(y, axis=(0, 1, 2)) * n / (n - 1)}}
      losses = []
      for t in range(2):
        def support_loss(p):
          pred = cnn_apply({'params': p, 'batch_stats': stats}, tasks['support'][0][t], False)[0]
          return meta.mse(pred, tasks['support'][1][t])
        adapted = jax.tree.map(lambda p, g: p - lr * g, params, jax.grad(support_loss)(params))
        pred = cnn_apply({'params': adapted, 'batch_stats': stats}, tasks['query'][0][t], False)[0]
        losses.append(meta.mse(pred, tasks['query'][1][t]))
      running = jax.tree.map(lambda old, b: 0.9 * old + 0.1 * jax.lax.stop_gradient(b),
                             variables['batch_stats'], stats)
      return jnp.mean(jnp.stack(losses)), running

    (expected_loss, expected_stats), expected = jax.value_and_grad(
        reference_loss, has_aux=True)(variables['params'])
    for task_map in ('vmap', 'unroll'):
      loss, grads, aux = meta.meta_grad(cnn_apply, variables, tasks, inner_steps=1, inner_lr=lr,
                                        task_map=task_map, batch_norm='shared')
      assert abs(float(loss - expected_loss)) < 1e-12
      assert max_abs_diff(grads, expected) < 1e-10
      assert max_abs_diff(aux['batch_stats'], expected_stats) < 1e-12
    with pytest.raises(ValueError, match="not 'reptile'"):
      meta.meta_grad(cnn_apply, variables, tasks, inner_steps=1, inner_lr=lr,
                     algorithm='reptile', batch_norm='shared')


def test_shared_batch_norm_keeps_a_common_change_that_task_norm_removes():
  """A task whose images all differ from another task's by one common change (one distortion
  type; here a contrast factor, which the linear conv passes on exactly): per-task statistics
  normalise it away, shared ones keep it visible to the head."""
  variables = cnn_init(jax.random.key(0))
  base = jax.random.normal(jax.random.key(2), (1, 6, 4, 4, 2))
  tasks = {'support': (jnp.concatenate([base, base * 3.0]), jnp.zeros((2, 6))),
           'query': (jnp.concatenate([base, base * 3.0]), jnp.zeros((2, 6)))}
  preds = {}
  for batch_norm in meta.BATCH_NORMS:
    pooled = jnp.concatenate([tasks[p][0].reshape((-1, 4, 4, 2)) for p in ('support', 'query')])
    stats = (meta._batch_statistics(cnn_apply, variables, pooled, None)[0]
             if batch_norm == 'shared' else variables['batch_stats'])
    adapted = [meta.inner_adapt(cnn_apply, variables | {'batch_stats': stats},
                                (tasks['support'][0][t], tasks['support'][1][t]), steps=1,
                                inner_lr=0.0, batch_norm=batch_norm) for t in range(2)]
    preds[batch_norm] = [cnn_apply(a, tasks['query'][0][t], batch_norm == 'task')[0]
                         for t, a in enumerate(adapted)]
  np.testing.assert_allclose(preds['task'][0], preds['task'][1], atol=1e-5)
  assert float(jnp.max(jnp.abs(preds['shared'][0] - preds['shared'][1]))) > 1e-2


def test_meta_sgd_inner_lr_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    variables = mlp_init(jax.random.key(0), dtype=jnp.float64)
    tasks = make_tasks(jax.random.key(1), 2, 5, 4, (3,), jnp.float64)
    lrs = jax.tree.map(lambda p: jnp.full(p.shape, 0.2, p.dtype), variables['params'])
    error = _fd_relative_error(mlp_apply, variables, tasks, 2, lrs, learn_inner_lr=True)
  print(f'Meta-SGD inner-lr FD max relative error: {error:.2e}')
  assert error < 1e-6


# ---------------------------------------------------------------- fomaml / reptile

def _linear_init(dim=3):
  return {'params': {'w': jnp.array([0.5, -1.0, 2.0][:dim]), 'b': jnp.array(0.3)},
          'batch_stats': {}}


def _linear_apply(variables, x, train, rngs=None):
  del train, rngs
  return x @ variables['params']['w'] + variables['params']['b'], {'batch_stats': {}}


def test_fomaml_equals_maml_iff_inner_hessian_is_zero():
  variables = _linear_init()
  tasks = make_tasks(jax.random.key(2), 3, 6, 5, (3,))
  only_bias = lambda path: path == ('b',)
  linear_loss = lambda pred, y: jnp.mean(y * pred)  # linear in (w, b): zero Hessian
  grads = {}
  for algorithm in ('maml', 'fomaml'):
    for loss_name, loss_fn in (('linear', linear_loss), ('mse', meta.mse)):
      grads[algorithm, loss_name] = jax.jit(functools.partial(
          meta.meta_grad, _linear_apply, inner_steps=2, inner_lr=0.1, algorithm=algorithm,
          adapt=only_bias, loss_fn=loss_fn))(variables, tasks)[1]
  assert max_abs_diff(grads['maml', 'linear'], grads['fomaml', 'linear']) < 1e-6
  assert max_abs_diff(grads['maml', 'mse'], grads['fomaml', 'mse']) > 1e-2


def test_reptile_equals_closed_form_on_quadratic():
  """Least squares, loss(t) = |X t - y|^2 / n = (t - c)' A (t - c) / 2 + const, A = 2 X'X / n:
  K SGD steps give t_K - c = (I - lr A)^K (t - c), so Reptile's gradient is
  t - t_K = (I - (I - lr A)^K)(t - c), averaged over tasks."""
  rng = np.random.default_rng(0)
  num_tasks, n, dim, steps, lr = 3, 8, 3, 4, 0.1
  xs = rng.normal(size=(num_tasks, n, dim))
  ys = rng.normal(size=(num_tasks, n))
  theta = np.array([0.2, -0.4, 0.7])
  expected = np.zeros(dim)
  for x, y in zip(xs, ys):
    a = 2 * x.T @ x / n
    c = np.linalg.solve(x.T @ x, x.T @ y)
    contraction = np.linalg.matrix_power(np.eye(dim) - lr * a, steps)
    expected += (np.eye(dim) - contraction) @ (theta - c) / num_tasks
  apply_fn = lambda v, x, train, rngs=None: (x @ v['params']['w'], {'batch_stats': {}})
  tasks = {'support': (jnp.asarray(xs, jnp.float32), jnp.asarray(ys, jnp.float32)),
           'query': (jnp.asarray(xs, jnp.float32), jnp.asarray(ys, jnp.float32))}
  _, grads, _ = meta.meta_grad(apply_fn, {'params': {'w': jnp.asarray(theta, jnp.float32)}},
                               tasks, inner_steps=steps, inner_lr=lr, algorithm='reptile')
  np.testing.assert_allclose(grads['w'], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- task maps vs a Python loop

@pytest.fixture(scope='module')
def cnn_problem():
  variables = cnn_init(jax.random.key(3))
  variables['batch_stats']['bn']['mean'] = jnp.array([0.5, -0.2, 0.1])
  tasks = make_tasks(jax.random.key(4), 2, 4, 3, (5, 5, 2))
  return variables, tasks


def test_task_maps_agree_with_python_loop(cnn_problem):
  variables, tasks = cnn_problem
  steps, lr = 2, 0.2
  # Reference: per task, grad of (query loss of inner_adapt(params)), averaged in Python.
  def query_loss(params, support, query):
    adapted = meta.inner_adapt(cnn_apply, variables | {'params': params}, support, steps=steps,
                               inner_lr=lr)
    pred, state = cnn_apply(adapted, query[0], True)
    return meta.mse(pred, query[1]), state['batch_stats']

  task_grad = jax.jit(jax.value_and_grad(query_loss, has_aux=True))
  losses, grads, stats = [], [], []
  for t in range(2):
    (loss, stat), grad = task_grad(variables['params'],
                                   (tasks['support'][0][t], tasks['support'][1][t]),
                                   (tasks['query'][0][t], tasks['query'][1][t]))
    losses.append(loss), grads.append(grad), stats.append(stat)
  mean = lambda trees: jax.tree.map(lambda *xs: sum(xs) / len(xs), *trees)
  expected = (sum(losses) / 2, mean(grads), mean(stats))
  for task_map in meta.TASK_MAPS:
    loss, grad, aux = jax.jit(functools.partial(
        meta.meta_grad, cnn_apply, inner_steps=steps, inner_lr=lr, task_map=task_map))(
            variables, tasks)
    assert abs(float(loss) - float(expected[0])) < 1e-5, task_map
    assert max_abs_diff(grad, expected[1]) < 1e-5, task_map
    assert max_abs_diff(aux['batch_stats'], expected[2]) < 1e-5, task_map


def test_remat_and_adam_inner_loop(cnn_problem):
  variables, tasks = cnn_problem
  run = lambda variables, **kw: jax.jit(functools.partial(
      meta.meta_grad, cnn_apply, inner_steps=2, inner_lr=0.05, task_map='unroll', **kw))(
          variables, tasks)
  plain, remat = run(variables), run(variables, remat=True)
  assert max_abs_diff(plain[1], remat[1]) < 1e-5
  # Second order through Adam with a parameter whose gradient is exactly zero: d sqrt(v)/dv at
  # v = 0 would be infinite without eps_root.
  unused = variables | {'params': variables['params'] | {'unused': jnp.zeros((2,))}}
  loss, grads, _ = run(unused, inner_optimizer='adam')
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.max(jnp.abs(grads['conv']['kernel']))) > 0


# ---------------------------------------------------------------- inner_adapt

def test_inner_adapt_one_step_and_running_stats(cnn_problem):
  variables, tasks = cnn_problem
  support = (tasks['support'][0][0], tasks['support'][1][0])
  loss_of = lambda params: meta.mse(cnn_apply(variables | {'params': params}, support[0],
                                              True)[0], support[1])
  grad = jax.grad(loss_of)(variables['params'])
  lrs = {'conv': 0.1, 'bn': 0.0, 'head': 0.3}
  adapted = meta.inner_adapt(cnn_apply, variables, support, steps=1, inner_lr=lrs)
  expected = jax.tree.map(lambda lr, p, g: p - lr * g, meta.broadcast_inner_lr(
      lrs, variables['params']), variables['params'], grad)
  assert max_abs_diff(adapted['params'], expected) < 1e-6
  conv = jax.lax.conv_general_dilated(support[0], variables['params']['conv']['kernel'], (1, 1),
                                      'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  expected_mean = 0.9 * variables['batch_stats']['bn']['mean'] + 0.1 * conv.mean((0, 1, 2))
  np.testing.assert_allclose(adapted['batch_stats']['bn']['mean'], expected_mean, atol=1e-6)
  # adapt='head' freezes everything else; the loss goes down.
  head_only = meta.inner_adapt(cnn_apply, variables, support, steps=5, inner_lr=0.3,
                               adapt='head')
  assert max_abs_diff(head_only['params']['conv'], variables['params']['conv']) == 0
  assert float(loss_of(head_only['params'])) < float(loss_of(variables['params']))


def test_bad_arguments_raise_clear_errors(cnn_problem):
  variables, tasks = cnn_problem
  with pytest.raises(ValueError, match='algorithm'):
    meta.meta_grad(cnn_apply, variables, tasks, inner_steps=1, inner_lr=0.1, algorithm='sgd')
  with pytest.raises(ValueError, match='task_map'):
    meta.meta_grad(cnn_apply, variables, tasks, inner_steps=1, inner_lr=0.1, task_map='pmap')
  with pytest.raises(ValueError, match='inner_lr'):
    meta.meta_grad(cnn_apply, variables, tasks, inner_steps=1, inner_lr={'backbone': 0.1})
  with pytest.raises(ValueError, match="'head'"):
    meta.adapt_mask(mlp_init(jax.random.key(0))['params'] | {'x': 1.0}, 'nothing')
  with pytest.raises(ValueError, match='selects no parameter'):
    meta.adapt_mask(variables['params'], lambda path: False)
  with pytest.raises(ValueError, match='query'):
    meta.meta_grad(cnn_apply, variables, {'support': tasks['support']}, inner_steps=1,
                   inner_lr=0.1)
  with pytest.raises(ValueError, match=r'tasks\[.query.\]'):
    meta.meta_grad(cnn_apply, variables, {'support': tasks['support'],
                                          'query': (tasks['query'][0], tasks['query'][1][0])},
                   inner_steps=1, inner_lr=0.1)


@pytest.mark.parametrize('settings, message', [
    ({'inner_steps': 0}, 'inner steps must be >= 1, got 0'),
    ({'inner_steps': 1, 'inner_optimizer': 'lbfgs'}, "inner_optimizer must be one of .* 'lbfgs'"),
    ({'inner_steps': 1, 'batch_norm': 'group'}, "batch_norm must be one of .* 'group'")])
def test_inner_loop_settings_are_refused_when_the_step_is_made(settings, message):
  """The inner-loop settings are checked once, by `make_meta_step`, before anything compiles."""
  tx = optim.make_optimizer(lr=1e-2)
  with pytest.raises(ValueError, match=message):
    meta.make_meta_step(cnn_apply, tx, inner_lr=0.1, **settings)


# ---------------------------------------------------------------- outer optimiser and step

def test_outer_optimizer_groups():
  params = {'backbone': {'w': jnp.ones(2)}, 'head': {'w': jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.make_optimizer(lr=1e-3, head_lr=1e-1)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves every coordinate by -lr (bias-corrected m / sqrt(v) = 1).
  np.testing.assert_allclose(updates['backbone']['w'], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates['head']['w'], -1e-1, rtol=1e-4)
  mlp_params = mlp_init(jax.random.key(0))['params']  # no backbone/head split: one group
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, mlp_params), tx.init(mlp_params))
  np.testing.assert_allclose(ravel_pytree(updates)[0], -1e-3, rtol=1e-4)
  decayed = optim.make_optimizer(lr=1e-3, schedule=optax.constant_schedule(0.5))
  updates, _ = decayed.update(grads, decayed.init(params), params)
  np.testing.assert_allclose(updates['head']['w'], -5e-4, rtol=1e-4)


def test_meta_step_compiles_once_and_updates_state(cnn_problem):
  variables, tasks = cnn_problem
  traces = []

  def counting_apply(*args, **kwargs):
    traces.append(1)
    return cnn_apply(*args, **kwargs, dropout_rate=0.5)

  tx = optim.make_optimizer(lr=1e-2)
  state = meta.init_meta_state(jax.tree.map(jnp.copy, variables), tx)  # donated by the step
  step = meta.make_meta_step(counting_apply, tx, inner_steps=2, inner_lr=0.1)
  state, metrics = step(state, tasks, jax.random.key(0))
  traced = len(traces)
  assert traced > 0 and set(metrics) == {'loss', 'support_loss', 'grad_norm'}
  for i in range(1, 3):
    state, metrics = step(state, tasks, jax.random.key(i))
  assert len(traces) == traced, 'meta step retraced'
  assert int(state.step) == 3
  memory = step.lower(state, tasks, jax.random.key(3)).compile().memory_analysis()
  assert memory.temp_size_in_bytes > 0  # The compiled step's buffer plan (bench/meta_step.py).
  assert max_abs_diff(state.batch_stats, variables['batch_stats']) > 1e-3
  assert max_abs_diff(state.params, variables['params']) > 1e-3


def test_meta_sgd_state_learns_inner_lr(cnn_problem):
  variables, tasks = cnn_problem
  tx = optim.make_optimizer(lr=1e-2)
  state = meta.init_meta_state(variables, tx, meta_sgd=True, inner_lr=0.1)
  assert state.inner_lr['conv']['kernel'].shape == variables['params']['conv']['kernel'].shape
  step = meta.make_meta_step(cnn_apply, tx, inner_steps=1, algorithm='fomaml', donate=False)
  new_state, _ = step(state, tasks, jax.random.key(0))
  assert max_abs_diff(new_state.inner_lr, state.inner_lr) > 1e-4


def test_resnet_meta_step_loss_decreases():
  model = create_model('resnet18', width=0.125, num_classes=10, head_features=(16, 8),
                       dropout_rate=0.5)
  variables = init_variables(model, jax.random.key(0), image_size=32)
  tasks = make_tasks(jax.random.key(1), 2, 4, 4, (32, 32, 3))
  tx = optim.make_optimizer(lr=3e-3, head_lr=1e-2)
  state = meta.init_meta_state(variables, tx)
  step = meta.make_meta_step(make_apply_fn(model), tx, inner_steps=1,
                             inner_lr={'backbone': 1e-3, 'head': 1e-2})
  losses = []
  for _ in range(6):
    state, metrics = step(state, tasks, jax.random.key(7))  # fixed batch, fixed dropout masks
    losses.append(float(metrics['loss']))
  print('tiny ResNet meta-step query losses:', np.round(losses, 4))
  assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_features_once_step_equals_the_step_on_images():
  """A backbone frozen whole (EfficientNet-Lite0, `freeze` = its blocks + 1, as the transfer
  recipe trains it): the step that runs it once over the meta-batch and adapts the head on its
  features (`features_fn`) gives the loss, gradient norm, parameters and running statistics of
  the step on the images (ANIL, second order, shared BatchNorm statistics, 2 tasks x (2 + 2))."""
  model = create_model('efficientnet_lite0', head_features=(8,), head_input='stats', freeze=17)
  variables = init_variables(model, jax.random.key(0), 32)
  tasks = {part: (jax.random.uniform(jax.random.key(i), (2, 2, 32, 32, 3), minval=-2, maxval=2),
                  jnp.asarray([[0.2, 0.9], [0.5, 0.1]]) + i / 10)
           for i, part in enumerate(('support', 'query'))}
  tx = optax.sgd(1.0)  # The update is the meta-gradient (Adam's would magnify its rounding).
  settings = dict(inner_steps=1, inner_lr=0.01, adapt='head', batch_norm='shared', donate=False)
  on_images = meta.make_meta_step(make_apply_fn(model), tx, **settings)
  on_features = meta.make_meta_step(make_apply_fn(model, on_features=True), tx,
                                    features_fn=jitted_backbone(model), **settings)
  state = meta.init_meta_state(variables, tx)
  (ours, ours_metrics), (reference, metrics) = (
      step(state, tasks, jax.random.key(1)) for step in (on_features, on_images))
  for name in metrics:
    np.testing.assert_allclose(ours_metrics[name], metrics[name], rtol=1e-4)
  assert jax.tree.structure(ours) == jax.tree.structure(reference)
  gradients = [ravel_pytree(jax.tree.map(jnp.subtract, variables['params'], s.params))[0]
               for s in (ours, reference)]
  assert np.abs(gradients[1]).max() > 1e-3  # The head learns; the backbone gets zeros.
  np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-3,
                             atol=1e-4 * np.abs(gradients[1]).max())
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
               ours.batch_stats, reference.batch_stats)

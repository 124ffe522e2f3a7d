"""The meta step, the supervised step and scoring, sharded over 4 forced host CPU devices, equal
their 1-device forms.

Runs in a subprocess: the device count is fixed when JAX starts, and the other test modules must
keep their single device.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

TESTS_DIR = pathlib.Path(__file__).parent

SCRIPT = textwrap.dedent("""
  import json, sys
  sys.path.insert(0, sys.argv[1])
  import functools
  import jax, jax.numpy as jnp
  from metaiqa_jax import meta, optim, parallel
  from metaiqa_jax.train import supervised
  from test_meta import cnn_apply, cnn_init, make_tasks, max_abs_diff

  assert jax.device_count() == 4, jax.devices()
  apply_fn = functools.partial(cnn_apply, dropout_rate=0.3)
  variables = cnn_init(jax.random.key(0))
  tasks = make_tasks(jax.random.key(1), 4, 4, 3, (5, 5, 2))
  tx = optim.make_optimizer(lr=1e-2)
  results, errors = {}, {}
  for devices in (1, 4):
    mesh = parallel.make_mesh(jax.devices()[:devices])
    step = meta.make_meta_step(apply_fn, tx, inner_steps=2, inner_lr=0.1, mesh=mesh,
                               task_map='vmap')
    state = meta.init_meta_state(jax.tree.map(jnp.copy, variables), tx)
    for i in range(2):
      state, metrics = step(state, tasks, jax.random.key(i))
    results[devices] = jax.device_get((state, metrics))
    try:
      step(state, make_tasks(jax.random.key(2), 6, 4, 3, (5, 5, 2)), jax.random.key(0))
      errors[devices] = None
    except ValueError as e:
      errors[devices] = str(e)
  # Supervised steps (fine-tuning, multitask) and scoring: the 8 images of a batch split over
  # the devices; BatchNorm statistics and gradients still span the whole batch.
  images = jax.random.normal(jax.random.key(3), (8, 5, 5, 2))
  mos = jax.random.uniform(jax.random.key(4), (8,))
  supervised_runs, supervised_errors = {}, {}
  for devices in (1, 4):
    mesh = parallel.make_mesh(jax.devices()[:devices])
    train_step = supervised.make_train_step(apply_fn, tx, mesh=mesh)
    predict = supervised.make_predict(apply_fn, mesh=mesh)
    state = meta.init_meta_state(jax.tree.map(jnp.copy, variables), tx)
    for i in range(2):
      state, metrics = train_step(state, images, mos, jax.random.key(i))
    scores = predict({'params': state.params, 'batch_stats': state.batch_stats}, images)
    supervised_runs[devices] = jax.device_get((state.params, state.batch_stats, metrics, scores))
    try:
      predict(variables, images[:6])
      supervised_errors[devices] = None
    except ValueError as e:
      supervised_errors[devices] = str(e)
  one, four = results[1], results[4]
  print(json.dumps({
      'max_abs_diff': max_abs_diff((one[0].params, one[0].batch_stats, one[0].opt_state),
                                   (four[0].params, four[0].batch_stats, four[0].opt_state)),
      'metrics_diff': max_abs_diff(one[1], four[1]),
      'params_moved': max_abs_diff(one[0].params, variables['params']),
      'error_1': errors[1], 'error_4': errors[4],
      'supervised_diff': max_abs_diff(supervised_runs[1], supervised_runs[4]),
      'supervised_moved': max_abs_diff(supervised_runs[1][0], variables['params']),
      'scoring_error_1': supervised_errors[1], 'scoring_error_4': supervised_errors[4]}))
""")


def test_four_device_steps_equal_one_device_steps():
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  proc = subprocess.run([sys.executable, '-c', SCRIPT, str(TESTS_DIR)], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  print('4-device vs 1-device meta step:', result)
  assert result['params_moved'] > 1e-3
  assert result['max_abs_diff'] < 1e-5
  assert result['metrics_diff'] < 1e-5
  assert result['error_1'] is None  # 6 tasks on 1 device is fine
  assert '6 tasks' in result['error_4'] and '4 devices' in result['error_4']
  assert result['supervised_moved'] > 1e-3
  assert result['supervised_diff'] < 1e-5
  assert result['scoring_error_1'] is None
  assert '6 images' in result['scoring_error_4'] and '4 devices' in result['scoring_error_4']

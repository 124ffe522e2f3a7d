"""The meta step sharded over 4 forced host CPU devices equals the 1-device step.

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
  one, four = results[1], results[4]
  print(json.dumps({
      'max_abs_diff': max_abs_diff((one[0].params, one[0].batch_stats, one[0].opt_state),
                                   (four[0].params, four[0].batch_stats, four[0].opt_state)),
      'metrics_diff': max_abs_diff(one[1], four[1]),
      'params_moved': max_abs_diff(one[0].params, variables['params']),
      'error_1': errors[1], 'error_4': errors[4]}))
""")


def test_four_device_step_equals_one_device_step():
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

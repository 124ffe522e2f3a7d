"""EfficientNet-Lite0 on CPU: how its convolutions should run, and what a frozen trunk costs.

Not a test. Times, at `--size` px and batch `--batch`, in interleaved rounds (A/B/A/B):
* forward (scoring) of the whole MetaIQA model on Lite0 with every convolution as XLA's
  convolution (`conv_impl='xla'`; depthwise ones as XLA grouped convolutions) against every
  convolution as a matmul / shifted multiply-add (`conv_impl='matmul'`, what 'auto' picks for
  Lite0's depthwise and 1x1 convolutions): the evidence behind `layers.choose_conv_impl`;
* a supervised training step (Adam, squared error, as fine-tuning runs it) with every block trainable (`freeze=0`) against the
  head alone (`freeze=16`, the transfer recipe), both with the 'auto' rule.

Usage: python bench/efficientnet.py [--size 224 --batch 32 --rounds 3 --repeats 2]
Writes bench/results/efficientnet.json: `ours` = the second variant's images/s, `peer` = the
first's, ratio > 1 when the second is faster.
"""

import argparse

import common


def forward_fn(conv_impl: str, size: int, batch: int):
  """A warm `() -> None` scoring `batch` images with Lite0 + MetaIQA head (stats input)."""
  import jax

  from metaiqa_jax.models import create_model, init_variables
  model = create_model('efficientnet_lite0', head_input='stats', conv_impl=conv_impl,
                       grad_order=0)
  variables = init_variables(model, jax.random.key(0), size)
  x = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
  apply = jax.jit(lambda v, x: model.apply(v, x, False))
  run = lambda: apply(variables, x).block_until_ready()
  run()
  return run


def train_step_fn(freeze: int, size: int, batch: int):
  """A warm `() -> None` running one Adam step of squared-error regression with `freeze`
  frozen blocks."""
  import jax
  import jax.numpy as jnp
  import optax

  from metaiqa_jax import meta
  from metaiqa_jax.models import create_model, init_variables, make_apply_fn
  from metaiqa_jax.train import supervised
  model = create_model('efficientnet_lite0', head_input='stats', freeze=freeze, grad_order=1)
  variables = init_variables(model, jax.random.key(0), size)
  tx = optax.adam(1e-3)
  step = supervised.make_train_step(make_apply_fn(model), tx)
  x = jax.random.normal(jax.random.key(1), (batch, size, size, 3))
  y = jnp.linspace(0.1, 0.9, batch)
  state = [meta.init_meta_state(variables, tx)]

  def run():
    state[0], metrics = step(state[0], x, y, jax.random.key(2))
    jax.block_until_ready(metrics)
  run()
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--out', help='default: bench/results/efficientnet.json')
  args = parser.parse_args()
  print(f'load average before: {common.load_average()}')
  shape = f'lite0 {args.size}px batch {args.batch}'
  rows = []
  pairs = {'forward, conv matmul (peer: xla)': {
               'xla': forward_fn('xla', args.size, args.batch),
               'matmul': forward_fn('matmul', args.size, args.batch)},
           'train step, head only (peer: all blocks)': {
               'all': train_step_fn(0, args.size, args.batch),
               'head': train_step_fn(16, args.size, args.batch)}}
  for metric, runs in pairs.items():
    (peer, _), (ours, _) = runs.items()
    seconds = common.interleave(runs, args.rounds, args.repeats)
    rows.append(common.interleaved_row(metric, args.batch, seconds[ours], seconds[peer],
                                       'img/s', shape))
    common.print_rows(rows[-1:])
  print(f'load average after: {common.load_average()}')
  common.write_rows('efficientnet', rows, out=args.out)


if __name__ == '__main__':
  main()

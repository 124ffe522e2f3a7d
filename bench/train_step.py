"""Fine-tuning step: images/s of one supervised training step, JAX vs PyTorch eager.

Not a test. Ours: `metaiqa_jax.train.supervised.make_train_step` (what fine-tuning and the
multitask baseline run): MetaIQA in training mode (BatchNorm batch statistics, dropout), MSE,
gradients, Adam with the backbone / head learning rates, per convolution implementation
(`--conv-impls`; '' = the backend's default for training). Peers: the same network and step in
PyTorch eager (`model.train()`, `torch.optim.Adam` with the same two parameter groups,
`loss.backward()`), NCHW and channels_last, `torch.set_num_threads(os.cpu_count())`.

Ours and the peers are built in one process and timed in `--rounds` alternating rounds of
`--repeats` steps (ours, NCHW, channels_last, ours, ...), so a change in the machine's load hits
every side alike; rows give each side's median and the median and range of the per-round
ratios.

Usage (a venv with jax and torch, e.g. /work/benchvenv):
  python bench/train_step.py                      # 224 px, batch 16, width 1
  python bench/train_step.py --size 64 --conv-impls '' xla matmul --no-torch
Writes bench/results/train_step.json (ratio > 1: ours faster).
"""

import argparse

import numpy as np

import common

LR = {'backbone': 1e-4, 'head': 1e-2}


def jax_step(width, size, batch, conv_impl):
  """(run_step, first-call seconds): one blocking training step of ours per call."""
  import jax
  from metaiqa_jax import meta, optim
  from metaiqa_jax.models import create_model, init_variables, make_apply_fn
  from metaiqa_jax.train import supervised
  model = create_model('resnet18', width, conv_impl=conv_impl or None)
  tx = optim.make_optimizer(lr=LR['backbone'], head_lr=LR['head'])
  state = meta.init_meta_state(init_variables(model, jax.random.key(0), size), tx)
  step = supervised.make_train_step(make_apply_fn(model), tx)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
  mos = rng.uniform(size=batch).astype(np.float32)
  holder = {'state': state, 'i': 0}

  def run_step():
    holder['state'], metrics = step(holder['state'], images, mos, jax.random.key(holder['i']))
    holder['i'] += 1
    jax.block_until_ready(metrics)

  first, _ = common.time_calls(run_step, 0)
  return run_step, first


def torch_step(width, size, batch, channels_last):
  """One blocking training step of the PyTorch eager peer per call."""
  import torch
  model, x = common.torch_model_and_images(width, size, batch, channels_last, train=True)
  y = torch.rand(batch, device=x.device)
  optimizer = torch.optim.Adam([{'params': model[0].parameters(), 'lr': LR['backbone']},
                                {'params': model[1].parameters(), 'lr': LR['head']}])

  def run_step():
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x)[:, 0], y).backward()
    optimizer.step()
    common.torch_sync()

  run_step()
  return run_step


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--width', type=float, default=1.0)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--conv-impls', nargs='+', default=[''],
                      choices=['', 'xla', 'matmul', 'auto'])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=2, help='steps per side and round')
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--append', action='store_true')
  parser.add_argument('--out', help='default: bench/results/train_step.json')
  args = parser.parse_args()
  print(f'load average before: {common.load_average()}', flush=True)
  runs, firsts = {}, {}
  for conv_impl in args.conv_impls:
    runs[conv_impl], firsts[conv_impl] = jax_step(args.width, args.size, args.batch, conv_impl)
  if not args.no_torch:
    for peer, channels_last in common.TORCH_LAYOUTS.items():
      runs[peer] = torch_step(args.width, args.size, args.batch, channels_last)
  seconds = common.interleave(runs, args.rounds, args.repeats)
  shape = f'resnet18 w{args.width:g} + head, {args.size}px, batch {args.batch}'
  rows = []
  for conv_impl in args.conv_impls:
    name = f"training step conv_impl={conv_impl or 'default'}"
    rows += common.rows_against_torch(f'{name} images/s', args.batch, seconds, conv_impl, shape)
    rows.append(common.row(f'{name} first step (compile)', firsts[conv_impl], None, 's', shape,
                           higher_is_better=False))
  common.print_rows(rows)
  print(f'load average after: {common.load_average()}')
  common.write_rows('train_step', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

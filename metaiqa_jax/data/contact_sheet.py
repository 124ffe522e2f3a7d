"""Renders the synthetic bank's 25 KADID distortion types x 5 levels on one photo as a PNG.

    python -m metaiqa_jax.data.contact_sheet --out sheet.png [--image PATH] [--cell 160]

Rows are types (number and KADID name), columns levels 1..5; each cell is captioned with the
level, its parameter and the KADID-10k human mean DMOS (1..5) that labels it. A first column
shows the undistorted photo. Distortions are applied at KADID-10k's scale (the photo's longer
side at most 512 px, as KADID's 512x384 images) and the results shrunk to the cell size, so
pixel-sized parameters (blur sigma, patch sizes) mean what they mean in KADID-10k.
"""

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metaiqa_jax.data.distortions import LEVEL_PARAMS, distort
from metaiqa_jax.data.labels import KADID_TYPES, NUM_LEVELS, kadid_label
from metaiqa_jax.data.pristine import bundled_photo_paths
from metaiqa_jax.data.synthetic import DEFAULT_MAX_SIDE
from metaiqa_jax.images import read_image

_LABEL_WIDTH = 190
_CAPTION = 16
_DEFAULT_PHOTO = 'coffee'


def default_photo_path() -> str:
  """The bundled photo the sheet uses by default (skimage's coffee, else the first bundled)."""
  paths = bundled_photo_paths()
  if not paths:
    raise FileNotFoundError('no bundled pristine photo found; pass --image')
  named = [p for p in paths if os.path.splitext(os.path.basename(p))[0] == _DEFAULT_PHOTO]
  return (named or paths)[0]


def _thumbnail(image: np.ndarray, cell: int) -> Image.Image:
  img = Image.fromarray(image)
  img.thumbnail((cell, cell), Image.Resampling.BICUBIC)
  return img


def render(image: np.ndarray, cell: int = 200, seed: int = 0) -> Image.Image:
  """The contact sheet for one (H, W, 3) uint8 photo (distorted at this size); cells are at
  most `cell` px wide and high."""
  photo = _thumbnail(image, cell)
  w, h = photo.size
  row_h = h + _CAPTION
  sheet = Image.new('RGB', (_LABEL_WIDTH + (NUM_LEVELS + 1) * (w + 4),
                            _CAPTION + len(KADID_TYPES) * (row_h + 4)), 'white')
  draw = ImageDraw.Draw(sheet)
  font = ImageFont.load_default()
  draw.text((4, 4), 'KADID type', fill='black', font=font)
  for col, title in enumerate(['pristine'] + [f'level {l}' for l in range(1, NUM_LEVELS + 1)]):
    draw.text((_LABEL_WIDTH + col * (w + 4), 4), title, fill='black', font=font)
  for t in range(1, len(KADID_TYPES) + 1):
    y = _CAPTION + (t - 1) * (row_h + 4)
    draw.text((4, y + h // 2), f'{t:2d} {KADID_TYPES[t - 1]}', fill='black', font=font)
    sheet.paste(photo, (_LABEL_WIDTH, y))
    for level in range(1, NUM_LEVELS + 1):
      x = _LABEL_WIDTH + level * (w + 4)
      sheet.paste(_thumbnail(distort(image, t, level, seed=seed), cell), (x, y))
      caption = f'{LEVEL_PARAMS[t][level - 1]:g}  mos {kadid_label(t, level):.2f}'
      draw.text((x, y + h + 2), caption, fill='black', font=font)
  return sheet


def main(argv: Optional[Sequence[str]] = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='PNG file to write')
  parser.add_argument('--image', default=None, help='photo to distort (default: a bundled one)')
  parser.add_argument('--cell', type=int, default=200, help='cell size in px')
  parser.add_argument('--max-side', type=int, default=DEFAULT_MAX_SIDE,
                      help='the photo is distorted at this longer side (px)')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  image = read_image(args.image or default_photo_path(), max_side=args.max_side)
  sheet = render(image, args.cell, args.seed)
  directory = os.path.dirname(os.path.abspath(args.out))
  os.makedirs(directory, exist_ok=True)
  sheet.save(args.out)
  print(f'wrote {args.out} ({sheet.size[0]}x{sheet.size[1]} px)')
  return args.out


if __name__ == '__main__':
  main(sys.argv[1:])

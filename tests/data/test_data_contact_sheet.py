"""The contact-sheet script writes a labelled 25 x 5 grid."""

import numpy as np
from PIL import Image

from metaiqa_jax.data import contact_sheet
from metaiqa_jax.data.distortions import distort

import data_layouts


def test_contact_sheet_grid(tmp_path):
  photo = data_layouts.tiny_pristine(1, hw=(48, 64))[0]
  Image.fromarray(photo).save(tmp_path / 'photo.png')
  out = tmp_path / 'sheet' / 'sheet.png'
  contact_sheet.main(['--out', str(out), '--image', str(tmp_path / 'photo.png'), '--cell', '64'])
  sheet = np.asarray(Image.open(out).convert('RGB'))
  row_h = 48 + 16 + 4
  assert sheet.shape == (16 + 25 * row_h, 190 + 6 * (64 + 4), 3)
  # Row of type 11 (white noise), level 5 column: the distorted photo itself (cell = photo size).
  y, x = 16 + 10 * row_h, 190 + 5 * (64 + 4)
  np.testing.assert_array_equal(sheet[y:y + 48, x:x + 64], distort(photo, 11, 5))
  np.testing.assert_array_equal(sheet[y:y + 48, 190:190 + 64], photo)

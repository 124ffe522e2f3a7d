"""Fine-tuning on a frozen backbone: its features computed once, only the head trained.

When nothing in the backbone trains (`models.backbones.output_is_fixed`: an EfficientNet-Lite
with `model.freeze` = its blocks + 1 and the head on 'pooled' or 'stats' features), the
backbone's output for a given crop is the same in every epoch. Fine-tuning then feeds each image
as its evaluation views (`preprocess.InputSpec.eval`, e.g. the 3 x 3 grid of 224 px crops), not
as random crops: the backbone's output for every view is computed once (`FeatureCache`, which
`metaiqa-transfer` shares between its rows, so rows with the same backbone compute it once), each
view is a training example labelled with its image's MOS, and an image's score is the mean over
its views, exactly as when the full model scores it. A step is then the head's alone (a few
milliseconds on a CPU instead of a backbone pass over the batch).
"""

import hashlib
from typing import Mapping, Sequence

import jax
import numpy as np

from metaiqa_jax.data import pipeline
from metaiqa_jax.models.metaiqa import jitted_backbone
from metaiqa_jax.preprocess import InputSpec


def view_features(backbone, variables: Mapping, source, indices: Sequence[int],
                  inputs: InputSpec, *, batch_size: int = 16) -> np.ndarray:
  """The backbone's evaluation-mode output for every evaluation view of `source[indices]`.

  Args:
    backbone: `jitted_backbone(model)` of a `models.MetaIQA` (its `head_input` says which
      features).
    variables: the model's `{'params', 'batch_stats'}`.
    source, indices: the images (at least one).
    inputs: how an image becomes its views (`InputSpec.eval`).
    batch_size: images per device call.

  Returns:
    float32 `(len(indices), V, D)`, in the order of `indices`.
  """
  rows = []
  for batch in pipeline.make_eval_loader(source, np.asarray(indices), batch_size=batch_size,
                                         inputs=inputs):
    views = batch['image']
    feats = np.asarray(backbone(variables, views.reshape((-1,) + views.shape[2:])))
    rows.append(feats.reshape(views.shape[:2] + feats.shape[1:])[batch['mask']])
  return np.concatenate(rows)


def backbone_fingerprint(variables: Mapping) -> str:
  """A digest of the backbone's parameters and statistics: equal for equal backbones."""
  digest = hashlib.sha1()
  for collection in ('params', 'batch_stats'):
    for path, leaf in jax.tree_util.tree_flatten_with_path(
        variables.get(collection, {}).get('backbone', {}))[0]:
      digest.update(jax.tree_util.keystr(path).encode())
      digest.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
  return digest.hexdigest()


class FeatureCache:
  """`cache(variables, indices) -> (len(indices), V, D)`: `view_features` of one source, each
  image computed once per distinct backbone (`backbone_fingerprint`) and kept in memory
  (V x D float32 per image: 100 KB for Lite0 'stats' on a 3 x 3 grid)."""

  def __init__(self, model, source, inputs: InputSpec, *, batch_size: int = 16):
    self.model, self.source, self.inputs, self.batch_size = model, source, inputs, batch_size
    self._backbone = jitted_backbone(model)  # One compilation for every backbone and call.
    self._tables: dict[str, dict[int, np.ndarray]] = {}

  def __call__(self, variables: Mapping, indices: Sequence[int]) -> np.ndarray:
    table = self._tables.setdefault(backbone_fingerprint(variables), {})
    missing = sorted({int(i) for i in indices} - table.keys())
    if missing:
      table.update(zip(missing, view_features(self._backbone, variables, self.source, missing,
                                              self.inputs, batch_size=self.batch_size)))
    return np.stack([table[int(i)] for i in indices])

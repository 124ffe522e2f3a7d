"""Synthetic pretraining of the two initialisations the paper compares: meta-learned, multitask.

Both see the same source, the same task batches, the same number of steps and the same outer
optimiser (`meta_train`, `multitask`); only the inner loop differs. Each run lives in its own
workdir and resumes there.
"""

import os

import ml_collections

from metaiqa_jax.train import meta_train, multitask

METHODS = ('meta', 'multitask')


def pretrain(config: ml_collections.ConfigDict, workdir, source) -> dict[str, str]:
  """Runs (or resumes) meta-training and multitask training on `source`.

  Returns:
    `{'meta': workdir/meta, 'multitask': workdir/multitask}`, the two run directories.
  """
  runs = {'meta': meta_train.meta_train, 'multitask': multitask.multitask_train}
  dirs = {}
  for method in METHODS:
    dirs[method] = os.path.join(os.fspath(workdir), method)
    runs[method](config, dirs[method], source=source)
  return dirs

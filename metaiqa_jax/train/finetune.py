"""Fine-tuning on an authentic-distortion dataset over N train/val/test splits.

`finetune(config, workdir)` is what `metaiqa-finetune` runs. For each split it trains the model
(`config.model.init`: usually a meta-trained checkpoint) on `train`, evaluates `val` after every
epoch, keeps the checkpoint with the best val SROCC, and reports that checkpoint's `test`
metrics: model selection never looks at test (the authors' script picked the best test epoch).
Layout: `workdir/splits.json` (made once, reused), `workdir/split_<k>/` (checkpoints, logs,
report), `workdir/report.json` (per split + mean/std/median), `workdir/scatter_split<k>.png`.
A run started again resumes the split it was in from its last checkpoint (saved after every
epoch and on SIGTERM) and skips the finished ones' training.
"""

import logging
import os

import ml_collections

from metaiqa_jax import metrics
from metaiqa_jax.train import finetuning, reporting, setup


def finetune(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Fine-tunes on every selected split; returns the report also written to report.json."""
  run = setup.finetune_run(config, workdir, source=source, verify=True)
  all_splits = setup.load_or_make_splits(config.finetune, run.source, run.workdir, config.seed)
  selected = list(config.finetune.splits) or list(range(len(all_splits)))
  results = []
  for k in selected:
    if not 0 <= k < len(all_splits):
      raise ValueError(f'config.finetune.splits asks for split {k}; there are '
                       f'{len(all_splits)}')
    result = finetuning.finetune_split(run, all_splits[k], k,
                                       os.path.join(os.fspath(run.workdir), f'split_{k}'))
    logging.info('split %d: test SROCC %.4f PLCC %.4f (best val epoch %s)', k,
                 result['test']['srocc'], result['test']['plcc'], result['best_epoch'])
    results.append(result)
  summary = metrics.aggregate([r['test'] for r in results])
  first = results[0]
  reporting.plot_scatter(
      os.path.join(os.fspath(run.workdir), f'scatter_split{first["split"]}.png'),
      first['predictions'], first['mos_norm'], first['test']['logistic'],
      title=f'{config.finetune.source}: test split {first["split"]}')
  report = {'program': 'finetune', 'source': config.finetune.source, 'splits': results,
            'test_summary': summary, 'config': config.to_dict()}
  reporting.write_report(run.workdir, report)
  return report

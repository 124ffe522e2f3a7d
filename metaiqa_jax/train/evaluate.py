"""Evaluation of a trained model on a dataset: `metaiqa-evaluate`.

Scores the images of `config.finetune.source` with the weights in `config.model.init` (a
checkpoint dir or a PyTorch file): every image, or with `config.finetune.split_file` the test part
of each selected split (then also mean/std/median over splits). Writes `report.json`,
`predictions.csv` (name, MOS, normalised MOS, prediction) and `scatter.png` to the workdir.

A checkpoint directory describes itself: the model (architecture, width, head) and the way
images are fed to it (`preprocess.InputSpec`) are read from it, so `config.model` and
`config.data`'s input keys only matter for PyTorch files.
"""

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from metaiqa_jax import checkpoints, configlib, metrics, models
from metaiqa_jax.models import construct
from metaiqa_jax.train import evaluation, reporting, setup, supervised


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Evaluates `config.model.init` on the fine-tuning dataset; returns the written report."""
  if not config.model.init:
    raise ValueError('evaluate needs weights: set --config.model.init=CHECKPOINT_DIR_OR_PT_FILE')
  run = setup.finetune_run(config, workdir, source=source, grad_order=0)
  if os.path.isdir(config.model.init):  # The checkpoint's own model and inputs.
    model_config, variables = checkpoints.restore_variables(config.model.init)
    model = model_config.create(construct.DTYPES[config.model.dtype],
                                config.model.conv_impl or None, grad_order=0)
    run = dataclasses.replace(run, model=model, apply_fn=models.make_apply_fn(model),
                              inputs=checkpoints.stored_inputs(config.model.init) or run.inputs)
  else:
    variables = construct.initial_variables(run.model, config.model.init, jax.random.key(0),
                                            config.data.image_size)
  predict = supervised.make_predict(run.apply_fn)
  source, workdir, inputs = run.source, run.workdir, run.inputs
  if config.finetune.split_file:
    all_splits = setup.stated_splits(config.finetune, source, config.finetune.split_file)
    if all_splits is None:
      raise configlib.ConfigError(f'config.finetune.split_file: no file '
                                  f'{config.finetune.split_file!r}')
    chosen = list(config.finetune.splits) or list(range(len(all_splits)))
    parts = {f'split_{k}': all_splits[k]['test'] for k in chosen}
  else:
    parts = {'all': np.arange(len(source))}
  results, rows = {}, []
  names, mos_native = source.metadata()['name'], source.metadata()['mos']
  for part, indices in parts.items():
    result, preds, mos = evaluation.evaluate_indices(predict, variables, source, indices, config,
                                                   inputs)
    results[part] = result
    rows += [(part, names[i], mos_native[i], m, p) for i, m, p in zip(indices, mos, preds)]
  report = {'program': 'evaluate', 'source': config.finetune.source,
            'weights': config.model.init, 'model': models.model_config(run.model).to_dict(),
            'inputs': inputs.to_dict(), 'results': results,
            'config': config.to_dict()}
  if len(results) > 1:
    report['summary'] = metrics.aggregate(list(results.values()))
  reporting.write_predictions(os.path.join(os.fspath(workdir), 'predictions.csv'), rows)
  first = next(iter(results))
  keep = [r for r in rows if r[0] == first]
  reporting.plot_scatter(os.path.join(os.fspath(workdir), 'scatter.png'),
                         [r[4] for r in keep], [r[3] for r in keep], results[first]['logistic'],
                         title=f'{config.finetune.source} ({first})')
  reporting.write_report(workdir, report)
  return report

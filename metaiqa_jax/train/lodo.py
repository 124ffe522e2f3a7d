"""Leave-one-distortion-out (LODO): generalisation to a distortion type never meta-trained on.

`lodo(config, workdir)` is what `metaiqa-lodo` runs. For each held-out type t
(`config.lodo.held_out`, or every type) it meta-trains on all other types
(`workdir/type_<t>/`, resumable like any meta-training run), then scores images of t:
zero-shot (k = 0), and after adapting to k labelled images of t with s inner steps, for every
k in `lodo.shots` and s in `lodo.adapt_steps`, over `lodo.repeats` draws. The k support images
and the scored query images come from disjoint reference contents. Writes `report.json` (rows
`{held_out_type, k, steps, repeat, srocc, plcc}` plus means), `srocc_vs_steps.png` and
`srocc_vs_shots.png`.
"""

import os
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from metaiqa_jax import checkpoints, metrics, preprocess
from metaiqa_jax.data import splits
from metaiqa_jax.train import evaluation, meta_train, reporting, setup


def draw_support_query(metadata, dist_type: int, *, shots: int, test_size: int,
                       seed: int, repeat: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Support (`shots` indices) and query (up to `test_size`, 0 = all) indices of one type,
  from disjoint reference contents: half the references (at least one) are support
  candidates, the rest query. Deterministic in (seed, repeat, dist_type)."""
  idx = np.flatnonzero(metadata['dist_type'] == dist_type)
  if idx.size == 0:
    raise ValueError(f'distortion type {dist_type} has no images')
  groups = splits.reference_groups(metadata['ref_id'])[idx]
  unique = np.unique(groups)
  if unique.size < 2:
    raise ValueError(f'type {dist_type}: need images of at least 2 reference contents')
  rng = np.random.default_rng([seed, repeat, dist_type])
  order = rng.permutation(unique)
  support_refs = order[:max(1, unique.size // 2)]
  is_support = np.isin(groups, support_refs)
  pool, query = idx[is_support], idx[~is_support]
  support = rng.choice(pool, shots, replace=shots > pool.size) if shots else pool[:0]
  if test_size and query.size > test_size:
    query = np.sort(rng.choice(query, test_size, replace=False))
  return support, query


def held_out_rows(adapt_predict: Mapping[int, Callable], inner_lr: Any, variables, source,
                  dist_type: int, *, shots: Sequence[int], steps: Sequence[int], repeats: int,
                  test_size: int, inputs: preprocess.InputSpec, seed: int,
                  extra: Mapping = None) -> list:
  """SROCC/PLCC on held-out type `dist_type` for every (k, s, repeat).

  Args:
    adapt_predict: steps -> `evaluation.make_adapt_predict(..., steps=steps)`.
    inner_lr: the adaptation learning rate(s) passed to those functions.
    variables: the initialisation to adapt.
    shots, steps: k values (0 = zero-shot, scored once per repeat) and step counts.
    repeats: support/query draws (`draw_support_query` with repeat 0..repeats-1).
    extra: fields copied into every row (e.g. the method name).

  Returns:
    rows `{held_out_type, k, steps, repeat, srocc, plcc, **extra}`; SROCC/PLCC are NaN (with
    the reason in `error`) where the predictions are constant.
  """
  metadata = source.metadata()
  labels = np.asarray(metadata['mos_norm'], np.float32)
  rows = []
  for repeat in range(repeats):
    support, query = draw_support_query(metadata, dist_type, shots=max(shots),
                                        test_size=test_size, seed=seed, repeat=repeat)
    rows += evaluation.shot_rows(
        adapt_predict, inner_lr, variables,
        (evaluation.eval_views(source, support, inputs), labels[support]),
        (evaluation.eval_views(source, query, inputs), labels[query]),
        shots=shots, steps=steps, key=jax.random.fold_in(jax.random.key(seed), repeat),
        fields={'held_out_type': int(dist_type), 'repeat': repeat, **(extra or {})})
  return rows


def _mean_srocc(rows: Sequence[Mapping], key: str) -> dict:
  """{value of `key`: mean SROCC of the rows that have it} (NaNs ignored, `metrics.summarise`)."""
  return {r[key]: r['srocc'] for r in metrics.summarise(rows, (key,), ('srocc',))}


def lodo(config: ml_collections.ConfigDict, workdir: str, *, source=None) -> dict:
  """Runs LODO for the configured held-out types; returns the report written to report.json."""
  run = setup.meta_run(config, workdir, source=source, task_samplers=False)
  source, workdir = run.source, run.workdir
  types = config.lodo.held_out or setup.task_types(source.metadata(), ())
  adapt_steps = sorted(set(config.lodo.adapt_steps) - {0})
  steps = [0] + adapt_steps  # 0 steps: the zero-shot (k = 0) rows.
  adapt_predict = {s: evaluation.make_adapt_predict(run.apply_fn, steps=s, adapt=config.meta.adapt,
                                                    batch_norm=config.meta.batch_norm)
                   for s in steps}
  rows, runs = [], {}
  for t in types:
    run_config = ml_collections.ConfigDict(config.to_dict())
    run_config.data.held_out_types = (int(t),)
    run_dir = os.path.join(os.fspath(workdir), f'type_{t}')
    runs[int(t)] = meta_train.meta_train(run_config, run_dir, source=source)['final_val']
    _, variables = checkpoints.restore_variables(run_dir)
    rows += held_out_rows(adapt_predict, config.lodo.adapt_lr, variables, source, int(t),
                          shots=config.lodo.shots, steps=adapt_steps,
                          repeats=config.lodo.repeats,
                          test_size=config.lodo.test_size,
                          inputs=run.inputs,
                          seed=config.seed)
  zero_shot = _mean_srocc([r for r in rows if r['k'] == 0], 'held_out_type')
  k_max, s_max = max(config.lodo.shots), max(steps)
  by_steps = _mean_srocc([r for r in rows if r['k'] == k_max or r['k'] == 0], 'steps')
  by_shots = _mean_srocc([r for r in rows if r['steps'] == s_max or r['k'] == 0], 'k')
  reporting.plot_curves(os.path.join(os.fspath(workdir), 'srocc_vs_steps.png'),
                        [s for s in steps], {f'k = {k_max}': [by_steps[s] for s in steps]},
                        'adaptation steps', 'SROCC on the held-out type')
  shot_list = sorted(config.lodo.shots)
  reporting.plot_curves(os.path.join(os.fspath(workdir), 'srocc_vs_shots.png'), shot_list,
                        {f'{s_max} steps': [by_shots[k] for k in shot_list]},
                        'labelled images of the held-out type (k)', 'SROCC on the held-out type')
  report = {'program': 'lodo', 'results': rows, 'zero_shot_srocc': zero_shot,
            'srocc_vs_steps': {str(k): v for k, v in by_steps.items()},
            'srocc_vs_shots': {str(k): v for k, v in by_shots.items()},
            'meta_validation': runs, 'config': config.to_dict()}
  reporting.write_report(workdir, report)
  return report

"""Agreement between predicted quality and human scores (MOS): SROCC, PLCC, KRCC, RMSE.

All functions take two 1-D array-likes of equal length, `pred` (model scores, any monotonic
scale) and `mos` (human scores), and return Python floats. Pairs where either value is NaN or
infinite are dropped; `evaluate_predictions` reports how many in `n_dropped`. Fewer than 3 valid
pairs, or a constant input (whose correlation is undefined), raise `ValueError` with a message
that says what was wrong.

PLCC is reported raw and after the 4-parameter logistic mapping recommended by VQEG
(`f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`), which removes the monotonic
non-linearity between the model's scale and the MOS scale before measuring linear agreement.
"""

from typing import Mapping, Sequence
import warnings

import numpy as np
from scipy import optimize, stats

MIN_PAIRS = 3
METRIC_NAMES = ('srocc', 'plcc', 'plcc_logistic', 'krcc', 'rmse')


def _valid_pairs(pred, mos) -> tuple[np.ndarray, np.ndarray, int]:
  """Returns `(pred, mos, n_dropped)` as float64 vectors with non-finite pairs removed."""
  pred = np.asarray(pred, dtype=np.float64).reshape(-1) if np.ndim(pred) else None
  mos = np.asarray(mos, dtype=np.float64).reshape(-1) if np.ndim(mos) else None
  if pred is None or mos is None:
    raise ValueError('pred and mos must be 1-D sequences of scores, got a scalar')
  if pred.shape != mos.shape:
    raise ValueError(f'pred and mos differ in length: {pred.size} predictions, {mos.size} MOS')
  keep = np.isfinite(pred) & np.isfinite(mos)
  n_dropped = int(pred.size - keep.sum())
  pred, mos = pred[keep], mos[keep]
  if pred.size < MIN_PAIRS:
    raise ValueError(f'need at least {MIN_PAIRS} finite (prediction, MOS) pairs, got '
                     f'{pred.size} ({n_dropped} of {keep.size} dropped as NaN/inf)')
  if np.ptp(pred) == 0:
    raise ValueError(f'constant predictions: the model outputs {pred[0]:.6g} for all '
                     f'{pred.size} images, so rank and linear correlations are undefined')
  if np.ptp(mos) == 0:
    raise ValueError(f'constant MOS: all {mos.size} labels equal {mos[0]:.6g}')
  return pred, mos, n_dropped


def srocc(pred, mos) -> float:
  """Spearman rank-order correlation coefficient, in [-1, 1]."""
  pred, mos, _ = _valid_pairs(pred, mos)
  return float(stats.spearmanr(pred, mos).statistic)


def plcc(pred, mos) -> float:
  """Pearson linear correlation coefficient of the raw predictions, in [-1, 1]."""
  pred, mos, _ = _valid_pairs(pred, mos)
  return float(stats.pearsonr(pred, mos).statistic)


def correlations(pred, mos) -> dict:
  """`{'srocc', 'plcc'}` of `pred` against `mos`. Predictions that cannot be correlated (constant,
  as a collapsed model gives, or fewer than `MIN_PAIRS` finite pairs) are a result, not a crash:
  both are NaN and `'error'` says why."""
  try:
    return {'srocc': srocc(pred, mos), 'plcc': plcc(pred, mos)}
  except ValueError as e:
    return {'srocc': float('nan'), 'plcc': float('nan'), 'error': str(e)}


def krcc(pred, mos) -> float:
  """Kendall rank correlation coefficient (tau-b), in [-1, 1]."""
  pred, mos, _ = _valid_pairs(pred, mos)
  return float(stats.kendalltau(pred, mos).statistic)


def rmse(pred, mos) -> float:
  """Root mean squared error of the raw predictions, in the units of `mos`.

  Only meaningful when `pred` is on the MOS scale (e.g. both normalised to [0, 1]).
  """
  pred, mos, _ = _valid_pairs(pred, mos)
  return float(np.sqrt(np.mean(np.square(pred - mos))))


def logistic4(x, b1, b2, b3, b4):
  """VQEG 4-parameter logistic: `(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`.

  `b2`/`b1` are the lower/upper asymptotes, `b3` the midpoint, `|b4|` the slope scale (in units
  of `x`). Returns float64 values of the shape of `x`.
  """
  z = -(np.asarray(x, np.float64) - b3) / max(abs(b4), 1e-12)
  return (b1 - b2) * 0.5 * (1.0 + np.tanh(-0.5 * z)) + b2  # == (b1-b2)/(1+exp(z)) + b2, stable.


def fit_logistic(pred, mos, maxfev: int = 20000) -> tuple[float, float, float, float]:
  """Least-squares fit of `logistic4` mapping `pred` onto `mos`.

  The initial guess (asymptotes at the MOS extremes, midpoint at the median prediction, slope
  scale from the prediction spread, asymptotes swapped for a decreasing relation) converges on
  typical IQA data. If `scipy.optimize.curve_fit` fails (no convergence within `maxfev`
  evaluations), a `RuntimeWarning` is issued and the initial guess is returned: still a
  monotonic map in the right direction. Returns `(b1, b2, b3, b4)` as floats.
  """
  pred, mos, _ = _valid_pairs(pred, mos)
  increasing = stats.spearmanr(pred, mos).statistic >= 0
  hi, lo = (mos.max(), mos.min()) if increasing else (mos.min(), mos.max())
  spread = np.std(pred) or 1.0
  guess = (hi, lo, float(np.median(pred)), float(spread))
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', optimize.OptimizeWarning)
      params, _ = optimize.curve_fit(logistic4, pred, mos, p0=guess, maxfev=maxfev)
    if not np.all(np.isfinite(params)):
      raise RuntimeError(f'non-finite parameters {params}')
  except (RuntimeError, ValueError) as e:
    warnings.warn(f'4-parameter logistic fit failed ({e}); using the initial guess {guess}',
                  RuntimeWarning, stacklevel=2)
    params = guess
  return tuple(float(p) for p in params)


def plcc_logistic(pred, mos) -> float:
  """PLCC between `logistic4(pred)` (fitted on these pairs) and `mos`."""
  pred, mos, _ = _valid_pairs(pred, mos)
  return _plcc_mapped(pred, mos, fit_logistic(pred, mos))


def _plcc_mapped(pred: np.ndarray, mos: np.ndarray, params) -> float:
  """PLCC after `logistic4(., *params)`; 0 if the mapping flattened every prediction."""
  mapped = logistic4(pred, *params)
  return float(stats.pearsonr(mapped, mos).statistic) if np.ptp(mapped) > 0 else 0.0


def evaluate_predictions(pred, mos) -> dict:
  """All metrics of one test set.

  Returns:
    `{'srocc', 'plcc', 'plcc_logistic', 'krcc', 'rmse'}` floats, plus `n` (valid pairs used),
    `n_dropped` (pairs dropped as non-finite) and `logistic` (the fitted `(b1, b2, b3, b4)`).
  """
  pred, mos, n_dropped = _valid_pairs(pred, mos)
  params = fit_logistic(pred, mos)
  return {
      'srocc': srocc(pred, mos),
      'plcc': plcc(pred, mos),
      'plcc_logistic': _plcc_mapped(pred, mos, params),
      'krcc': krcc(pred, mos),
      'rmse': rmse(pred, mos),
      'n': int(pred.size),
      'n_dropped': n_dropped,
      'logistic': list(params),
  }


def aggregate(results: Sequence[Mapping[str, float]],
              names: Sequence[str] = METRIC_NAMES) -> dict:
  """Summary over splits/runs: `{name: {'mean', 'std', 'median', 'values'}}`.

  `std` is the population standard deviation (ddof=0), as usually reported over IQA splits.
  Metrics listed in `names` but missing from every result are left out; a metric present in
  only some results raises `ValueError` naming it.
  """
  if not results:
    raise ValueError('aggregate() needs at least one result')
  summary = {}
  for name in names:
    present = [name in r for r in results]
    if not any(present):
      continue
    if not all(present):
      missing = [i for i, p in enumerate(present) if not p]
      raise ValueError(f'metric {name!r} is missing from results {missing}')
    values = np.asarray([float(r[name]) for r in results], np.float64)
    summary[name] = {'mean': float(np.mean(values)), 'std': float(np.std(values)),
                     'median': float(np.median(values)), 'values': values.tolist()}
  return summary


def t_interval(values) -> tuple[float, float, int]:
  """Mean, 95% Student-t interval half-width and count of `values` (NaNs dropped).

  The half-width is NaN for a single value; the mean is NaN for none.
  """
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return float('nan'), float('nan'), 0
  if v.size == 1:
    return float(v[0]), float('nan'), 1
  half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
  return float(v.mean()), float(half), int(v.size)


def summarise(rows: Sequence[Mapping], keys: Sequence[str],
              names: Sequence[str] = ('srocc', 'plcc')) -> list[dict]:
  """Per group of `keys`: mean and 95% t-interval (`<name>_ci95`) of each of `names` over the
  group's rows, and `n`, the number of finite values; groups in sorted order."""
  groups = {}
  for row in rows:
    groups.setdefault(tuple(row[k] for k in keys), []).append(row)
  out = []
  for key, group in sorted(groups.items()):
    entry = dict(zip(keys, key))
    for name in names:
      mean, half, n = t_interval([r[name] for r in group])
      entry |= {name: mean, f'{name}_ci95': half, 'n': n}
    out.append(entry)
  return out

"""metaiqa_jax.metrics against scipy/numpy computed independently, and its error cases."""

import numpy as np
import pytest
from scipy import stats

from metaiqa_jax import metrics


@pytest.fixture(scope='module')
def scores():
  rng = np.random.default_rng(0)
  mos = rng.uniform(1, 5, size=200)
  pred = 0.2 * mos + rng.normal(0, 0.15, size=200)
  return pred, mos


def test_correlations_match_scipy(scores):
  pred, mos = scores
  assert metrics.srocc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)
  assert metrics.plcc(pred, mos) == pytest.approx(np.corrcoef(pred, mos)[0, 1], abs=1e-12)
  assert metrics.krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0], abs=1e-12)
  assert metrics.rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)), abs=1e-12)


def test_correlations_or_nan_for_a_collapsed_model(scores):
  pred, mos = scores
  assert metrics.correlations(pred, mos) == {'srocc': metrics.srocc(pred, mos),
                                             'plcc': metrics.plcc(pred, mos)}
  collapsed = metrics.correlations(np.full_like(mos, 0.5), mos)
  assert np.isnan(collapsed['srocc']) and np.isnan(collapsed['plcc'])
  assert 'constant predictions' in collapsed['error']


def test_nonfinite_pairs_are_dropped_and_counted(scores):
  pred, mos = scores
  pred_bad, mos_bad = pred.copy(), mos.copy()
  pred_bad[[3, 10]] = np.nan
  mos_bad[20] = np.inf
  keep = np.ones(pred.size, bool)
  keep[[3, 10, 20]] = False
  result = metrics.evaluate_predictions(pred_bad, mos_bad)
  assert result['n'] == pred.size - 3 and result['n_dropped'] == 3
  assert result['srocc'] == pytest.approx(stats.spearmanr(pred[keep], mos[keep])[0], abs=1e-12)
  assert result['plcc'] == pytest.approx(np.corrcoef(pred[keep], mos[keep])[0, 1], abs=1e-12)


def test_logistic_fit_recovers_known_parameters():
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 1, size=300)
  true = (4.5, 1.2, 0.4, 0.08)
  y = metrics.logistic4(x, *true) + rng.normal(0, 0.01, size=x.size)
  b1, b2, b3, b4 = metrics.fit_logistic(x, y)
  np.testing.assert_allclose([b1, b2, b3, abs(b4)], true, rtol=0.05, atol=0.01)


def test_logistic_formula_and_decreasing_relation():
  x = np.array([-1.0, 0.0, 2.0])
  expected = (3.0 - 1.0) / (1.0 + np.exp(-(x - 0.5) / 0.7)) + 1.0
  np.testing.assert_allclose(metrics.logistic4(x, 3.0, 1.0, 0.5, -0.7), expected, rtol=1e-12)
  rng = np.random.default_rng(2)
  pred = rng.uniform(0, 1, size=100)
  mos = 5 - 4 * pred ** 2 + rng.normal(0, 0.05, size=100)
  # The mapping undoes the curvature: PLCC after it beats the raw |PLCC| on a non-linear relation.
  assert metrics.plcc_logistic(pred, mos) > 0.99 > abs(metrics.plcc(pred, mos))
  assert metrics.plcc_logistic(pred, mos) > 0


def test_failed_fit_warns_and_falls_back(scores):
  pred, mos = scores
  with pytest.warns(RuntimeWarning, match='logistic fit failed'):
    params = metrics.fit_logistic(pred, mos, maxfev=1)
  assert np.all(np.isfinite(params))
  assert -1 <= metrics.evaluate_predictions(pred, mos)['plcc_logistic'] <= 1


def test_constant_predictions_error_names_value():
  with pytest.raises(ValueError, match=r'constant predictions: the model outputs 0.5 for all 4'):
    metrics.evaluate_predictions([0.5, 0.5, 0.5, 0.5], [1, 2, 3, 4])


def test_too_few_pairs_and_length_mismatch():
  with pytest.raises(ValueError, match='at least 3 finite'):
    metrics.srocc([0.1, np.nan, 0.3, 0.4], [1, 2, np.nan, 4])
  with pytest.raises(ValueError, match='differ in length: 3 predictions, 2 MOS'):
    metrics.plcc([1, 2, 3], [1, 2])


def test_aggregate_over_splits():
  splits = [{'srocc': 0.8, 'plcc': 0.7}, {'srocc': 0.9, 'plcc': 0.75},
            {'srocc': 0.6, 'plcc': 0.9}]
  summary = metrics.aggregate(splits)
  assert set(summary) == {'srocc', 'plcc'}
  srocc = np.array([0.8, 0.9, 0.6])
  assert summary['srocc']['mean'] == pytest.approx(srocc.mean())
  assert summary['srocc']['std'] == pytest.approx(srocc.std())
  assert summary['srocc']['median'] == pytest.approx(0.8)
  assert summary['plcc']['values'] == [0.7, 0.75, 0.9]
  with pytest.raises(ValueError, match="'plcc' is missing from results \\[1\\]"):
    metrics.aggregate([{'srocc': 0.8, 'plcc': 0.7}, {'srocc': 0.9}])


def test_t_interval_matches_scipy():
  values = [0.1, 0.4, 0.35, 0.2]
  mean, half, n = metrics.t_interval(values + [float('nan')])
  low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
  np.testing.assert_allclose([mean - half, mean + half], [low, high])
  assert n == 4
  assert metrics.t_interval([0.3])[0] == 0.3 and np.isnan(metrics.t_interval([0.3])[1])


def test_summarise_groups_rows_and_sorts_groups():
  rows = [{'init': 'b', 'srocc': 0.5, 'plcc': 0.4}, {'init': 'a', 'srocc': 0.1, 'plcc': 0.2},
          {'init': 'b', 'srocc': 0.7, 'plcc': 0.6}]
  summary = metrics.summarise(rows, ('init',))
  assert [r['init'] for r in summary] == ['a', 'b']
  assert summary[1]['srocc'] == pytest.approx(0.6) and summary[1]['n'] == 2
  assert summary[1]['plcc_ci95'] == pytest.approx(metrics.t_interval([0.4, 0.6])[1])

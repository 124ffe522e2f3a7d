"""The frozen ImageNet probe: a backbone's feature statistics, standardised, and ridge regression.

No network weight is trained: each image is described by what its ImageNet backbone computes
(`head_input='stats'` of `models.efficientnet`: the pooled head features and the per-channel
mean and standard deviation of every stage's output, averaged over the image's evaluation
views; `train.frozen_trunk.view_features`), the features are standardised on the training
images and a ridge regression on them predicts the normalised MOS (`Ridge`). On LIVE Challenge
this is a strong floor (dev half at native resolution, 3 x 3 views of 224 px: SROCC 0.797 over
10 splits at lambda 1000), which a trained quality model must beat to show that training added
anything.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Ridge:
  """A ridge regression on standardised features: `predict(x) = ((x - mean) / std) @ w + b`.

  Attributes:
    mean, std: (D,) the training features' (std floored at 1e-6).
    w: (D,) weights; b: the intercept (the training targets' mean).
  """
  mean: np.ndarray
  std: np.ndarray
  w: np.ndarray
  b: float

  @classmethod
  def fit(cls, x: np.ndarray, y: np.ndarray, lam: float) -> 'Ridge':
    """Minimises |X w - (y - mean y)|^2 + lam |w|^2 over standardised `x` (n, D), `y` (n,)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return cls(mean, std, w, float(y.mean()))

  def predict(self, x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.float64) - self.mean) / self.std) @ self.w + self.b

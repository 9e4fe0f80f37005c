"""Fréchet distance between Gaussians fitted to features, in float64 on the host.

FD = |mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrt(sigma1 sigma2), the FID
when the features are Inception pool features. Means have shape (dim,) and
covariances (dim, dim); every input is converted to float64.
"""

import warnings

import numpy as np
import scipy
import scipy.linalg


class FeatureStats:
  """Streaming mean and covariance of (B, dim) feature batches, in float64.

    As NVlabs/edm fid.py, the running sums are s1 = sum f and s2 = sum f f^T and
    n = number of rows, but of the shifted features f - c, where c is the first
    non-empty batch's mean. Shifting changes neither the covariance,
    (s2 - n m m^T) / (n - 1) with m = s1 / n, nor the mean, c + m, but it keeps
    s2 - n m m^T from cancelling catastrophically when |mean| >> std.
    """

  def __init__(self, dim: int):
    self.dim = dim
    self.n = 0
    self._shift = None
    self._s1 = np.zeros((dim,), np.float64)
    self._s2 = np.zeros((dim, dim), np.float64)

  @classmethod
  def from_features(cls, features: np.ndarray) -> "FeatureStats":
    """Statistics of one (N, dim) array of features."""
    features = np.asarray(features)
    if features.ndim != 2:
      raise ValueError(f"expected features of shape (N, dim), got {features.shape}")
    stats = cls(features.shape[1])
    stats.update(features)
    return stats

  def update(self, features: np.ndarray) -> None:
    """Adds a (B, dim) batch of any float dtype."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != self.dim:
      raise ValueError(f"expected features of shape (B, {self.dim}), got {f.shape}")
    if not len(f):
      return
    if self._shift is None:
      self._shift = f.mean(axis=0)
    f = f - self._shift
    self._s1 += f.sum(axis=0)
    self._s2 += f.T @ f
    self.n += len(f)

  def mean(self) -> np.ndarray:
    """Mean of all features added, (dim,) float64."""
    if self.n < 1:
      raise ValueError("mean needs at least 1 feature, got 0")
    return self._shift + self._s1 / self.n

  def covariance(self) -> np.ndarray:
    """Unbiased covariance (normalised by n - 1), (dim, dim) float64."""
    if self.n < 2:
      raise ValueError(f"covariance needs at least 2 features, got {self.n}")
    m = self._s1 / self.n
    return (self._s2 - self.n * np.outer(m, m)) / (self.n - 1)


def _gaussians(mu1, sigma1, mu2, sigma2):
  """The four statistics as float64 arrays, after checking their shapes agree."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise ValueError(f"mean shapes differ: {mu1.shape} vs {mu2.shape}")
  if sigma1.shape != sigma2.shape:
    raise ValueError(f"covariance shapes differ: {sigma1.shape} vs {sigma2.shape}")
  if mu1.ndim != 1 or sigma1.shape != (len(mu1), len(mu1)):
    raise ValueError(f"need means (dim,) and covariances (dim, dim), got {mu1.shape} and {sigma1.shape}")
  return mu1, sigma1, mu2, sigma2


def _sqrtm(a: np.ndarray) -> np.ndarray:
  """scipy.linalg.sqrtm(a) without printing, warning or the error estimate.

    `disp=False` silenced the failure message before SciPy 1.16, which deprecated
    `disp`; since then sqrtm warns (LinAlgWarning) on singular input instead.
    """
  if np.lib.NumpyVersion(scipy.__version__) < "1.16.0":
    return scipy.linalg.sqrtm(a, disp=False)[0]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    return scipy.linalg.sqrtm(a)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Fréchet distance by pytorch-fid's recipe (Schur-based scipy sqrtm).

    If sqrt(sigma1 sigma2) is not finite, eps * I is added to both covariances
    and it is recomputed. A complex root whose diagonal has an imaginary part
    above 1e-3 raises ValueError; a smaller one is rounding and is dropped.
    """
  mu1, sigma1, mu2, sigma2 = _gaussians(mu1, sigma1, mu2, sigma2)
  diff = mu1 - mu2
  covmean = _sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = eps * np.eye(len(mu1))
    covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_eigh(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet distance from symmetric eigendecompositions only (no Schur).

    With s = sqrt(sigma1) (from eigh, negative rounding eigenvalues clipped to 0),
    M = s sigma2 s is symmetric PSD and has the eigenvalues of
    sigma1 sigma2 = s (s sigma2): AB and BA share their characteristic polynomial
    (and for invertible s, M = s^-1 (sigma1 sigma2) s is similar to it). So the
    principal root has Tr sqrt(sigma1 sigma2) = sum_i sqrt(lambda_i(M)), the same
    value the scipy path takes the trace of, up to rounding.
    """
  mu1, sigma1, mu2, sigma2 = _gaussians(mu1, sigma1, mu2, sigma2)
  diff = mu1 - mu2
  w, v = np.linalg.eigh(sigma1)
  root1 = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
  m = root1 @ sigma2 @ root1
  lam = np.linalg.eigvalsh((m + m.T) / 2)
  tr_covmean = np.sqrt(np.maximum(lam, 0.0)).sum()
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)

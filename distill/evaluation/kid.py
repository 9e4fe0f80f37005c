"""Kernel Inception Distance (Bińkowski et al. 2018), in float64 numpy.

As clean-fid and torch-fidelity: the unbiased MMD^2 estimate with the cubic
polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets.
"""

import numpy as np


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return (x @ y.T / x.shape[1] + 1.0)**3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 between two (m, d) samples of the same size m."""
  m = len(x)
  k_xx = _polynomial_kernel(x, x)
  k_yy = _polynomial_kernel(y, y)
  k_xy = _polynomial_kernel(x, y)
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(real: np.ndarray,
                              fake: np.ndarray,
                              num_subsets: int = 100,
                              subset_size: int = 1000,
                              seed: int = 0) -> dict[str, float]:
  """KID of fake (M, D) against real (N, D) features: mean and std over subsets.

    Each of the num_subsets subsets draws m = min(subset_size, N, M) rows of real
    and then of fake without replacement, from np.random.default_rng(seed).
    kid_std is the population std (ddof=0) of the per-subset MMD^2, as
    torch-fidelity reports it.
    """
  real = np.asarray(real, dtype=np.float64)
  fake = np.asarray(fake, dtype=np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"need real (N, D) and fake (M, D) features, got {real.shape} and {fake.shape}")
  m = min(subset_size, len(real), len(fake))
  if m < 2:
    raise ValueError(f"need subsets of at least 2 samples, got m={m}")
  rng = np.random.default_rng(seed)
  mmd2 = np.empty((num_subsets,), np.float64)
  for s in range(num_subsets):
    x = real[rng.choice(len(real), m, replace=False)]
    y = fake[rng.choice(len(fake), m, replace=False)]
    mmd2[s] = _mmd2_unbiased(x, y)
  return {"kid": float(mmd2.mean()), "kid_std": float(mmd2.std())}

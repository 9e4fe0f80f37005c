"""Improved precision and recall (Kynkäänniemi et al. 2019), in float64 numpy.

Conventions checked against the official implementation,
kynkaat/improved-precision-and-recall-metric, precision_recall.py:
`ManifoldEstimator` takes, for every reference sample, the entry `nhood_sizes`
= [3] of `np.partition` over its squared distances to ALL reference samples,
the zero self distance being entry 0, i.e. the k-th nearest OTHER sample; a
sample is in the manifold if `distances <= radii` for at least one reference
sample; precision evaluates fake samples on the real manifold and recall real
samples on the fake manifold. Here the self distance is set to +inf and the
k-th smallest remaining distance is taken, which is the same radius.

Distances are compared squared, as there (sqrt is monotone), and computed in
float64 as |a|^2 + |b|^2 - 2 a.b clipped at 0, in (batch_size, batch_size)
tiles so memory stays O(batch_size^2). The formula is exact for small
integer-valued features; otherwise a sample within rounding of a ball's
boundary may land on either side.
"""

import numpy as np


def _tiles(n: int, batch_size: int):
  return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _sq_distances(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
  """Squared Euclidean distances (len(a), len(b)) from precomputed squared norms."""
  return np.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def _knn_radii_sq(x: np.ndarray, x_sq: np.ndarray, k: int, batch_size: int) -> np.ndarray:
  """Squared distance (N,) from each row of x to its k-th nearest other row."""
  n = len(x)
  radii = np.empty((n,), np.float64)
  for i0, i1 in _tiles(n, batch_size):
    best = np.full((i1 - i0, k), np.inf)  # the k smallest seen so far, unsorted
    for j0, j1 in _tiles(n, batch_size):
      d = _sq_distances(x[i0:i1], x_sq[i0:i1], x[j0:j1], x_sq[j0:j1])
      rows = np.arange(max(i0, j0), min(i1, j1))
      d[rows - i0, rows - j0] = np.inf  # a sample is not its own neighbour
      best = np.partition(np.concatenate([best, d], axis=1), k - 1, axis=1)[:, :k]
    radii[i0:i1] = best.max(axis=1)
  return radii


def _in_manifold_fraction(ref: np.ndarray, ref_sq: np.ndarray, radii_sq: np.ndarray, query: np.ndarray,
                          query_sq: np.ndarray, batch_size: int) -> float:
  """Fraction of query rows within radii of at least one ref row."""
  inside = np.zeros((len(query),), bool)
  for i0, i1 in _tiles(len(query), batch_size):
    for j0, j1 in _tiles(len(ref), batch_size):
      d = _sq_distances(query[i0:i1], query_sq[i0:i1], ref[j0:j1], ref_sq[j0:j1])
      inside[i0:i1] |= (d <= radii_sq[None, j0:j1]).any(axis=1)
  return float(inside.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 10000) -> dict[str, float]:
  """k-NN precision and recall of fake (M, D) against real (N, D) features.

    precision: fraction of fake samples inside at least one real ball, a real
    sample's ball reaching its k-th nearest other real sample. recall: fraction
    of real samples inside the fake manifold, estimated the same way. Needs
    N > k and M > k.
    """
  real = np.asarray(real, dtype=np.float64)
  fake = np.asarray(fake, dtype=np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"need real (N, D) and fake (M, D) features, got {real.shape} and {fake.shape}")
  if min(len(real), len(fake)) <= k:
    raise ValueError(f"need more than k={k} samples per set, got {len(real)} real and {len(fake)} fake")
  real_sq = np.einsum("ij,ij->i", real, real)
  fake_sq = np.einsum("ij,ij->i", fake, fake)
  real_radii = _knn_radii_sq(real, real_sq, k, batch_size)
  fake_radii = _knn_radii_sq(fake, fake_sq, k, batch_size)
  return {
      "precision": _in_manifold_fraction(real, real_sq, real_radii, fake, fake_sq, batch_size),
      "recall": _in_manifold_fraction(fake, fake_sq, fake_radii, real, real_sq, batch_size),
  }

"""Two-sample distances between point clouds, computed in float64 with numpy.

Point clouds are arrays of shape (n, d): n samples of dimension d (a flattened
image is one sample with d = H * W * C).
"""

import numpy as np


def _as_cloud(a: np.ndarray, name: str) -> np.ndarray:
  a = np.asarray(a, dtype=np.float64)
  if a.ndim != 2:
    raise ValueError(f"{name} must have shape (n, d), got {a.shape}")
  return a


def _pairwise_distance_sum(a: np.ndarray, b: np.ndarray, block_size: int) -> float:
  """Sum of Euclidean distances |a_i - b_j| over all pairs, in square tiles.

    When `a is b`, the diagonal pairs (i, i) are left out, so rounding in the
    Gram-matrix formula cannot leave a small positive |a_i - a_i|.
    """
  same = a is b
  a_sq = np.einsum("ij,ij->i", a, a)
  b_sq = a_sq if same else np.einsum("ij,ij->i", b, b)
  total = 0.0
  for i in range(0, len(a), block_size):
    a_blk = a[i:i + block_size]
    for j in range(0, len(b), block_size):
      b_blk = b[j:j + block_size]
      sq = a_sq[i:i + block_size, None] + b_sq[None, j:j + block_size] - 2.0 * a_blk @ b_blk.T
      dist = np.sqrt(np.maximum(sq, 0.0))
      if same and i == j:
        np.fill_diagonal(dist, 0.0)
      total += dist.sum()
  return float(total)


# Above this many pairs (n * m), 2-D energy distances use the exact projection formula instead of all pairs.
MAX_PAIRWISE = 16384 * 16384


def energy_distance(x: np.ndarray, y: np.ndarray, block_size: int = 1024, method: str = "auto") -> float:
  """Squared energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| between x (n, d) and y (m, d).

    This is the energy distance between the two empirical measures (V-statistic:
    every term averages all pairs, the zero diagonal included), so it is >= 0,
    exactly 0 for identical clouds, and a data-vs-data "floor" of two independent
    draws is a positive O(1/n) number that model samples can be compared with.
    method 'pairwise' sums all pairwise distances in (block_size, block_size)
    tiles (memory O(block_size**2), time O(n m)); 'projected' (2-D only) is
    `projected_energy_distance`, O((n + m) log(n + m)) per direction; 'auto'
    projects 2-D clouds with more than MAX_PAIRWISE pairs.
    """
  x, y = _as_cloud(x, "x"), _as_cloud(y, "y")
  n, m = len(x), len(y)
  if x.shape[1] != y.shape[1] or n < 2 or m < 2:
    raise ValueError(f"need (n>=2, d) and (m>=2, d) clouds, got {x.shape} and {y.shape}")
  if method not in ("auto", "pairwise", "projected"):
    raise ValueError(f"unknown energy distance method {method!r}; choose auto, pairwise or projected")
  if method == "projected" or (method == "auto" and x.shape[1] == 2 and n * m > MAX_PAIRWISE):
    return projected_energy_distance(x, y)
  xy = _pairwise_distance_sum(x, y, block_size) / (n * m)
  xx = _pairwise_distance_sum(x, x, block_size) / (n * n)
  yy = _pairwise_distance_sum(y, y, block_size) / (m * m)
  return 2.0 * xy - xx - yy


def _energy_1d(px: np.ndarray, py: np.ndarray) -> np.ndarray:
  """1-D energy distances 2 int (F_x - F_y)^2 dt of the empirical measures of the columns of px (n, k), py (m, k):
  the squared CDF gap, constant between consecutive merged sorted points, times the gap's length, summed."""
  z = np.concatenate([px, py])
  weight = np.concatenate([np.full(len(px), 1.0 / len(px)), np.full(len(py), -1.0 / len(py))])
  order = np.argsort(z, axis=0)
  gap = np.cumsum(weight[order], axis=0)[:-1]
  return 2.0 * np.sum(gap**2 * np.diff(np.take_along_axis(z, order, axis=0), axis=0), axis=0)


def projected_energy_distance(x: np.ndarray, y: np.ndarray, num_directions: int = 256, chunk: int = 8) -> float:
  """The energy distance of two 2-D clouds x (n, 2), y (m, 2) from their 1-D projections, in O((n + m) log(n + m))
  time per direction and O((n + m) chunk) memory.

    In 2-D |v| = (pi / 2) E_theta |<theta, v>| (theta uniform on the circle), so the energy distance is pi / 2 times
    the mean over directions of the 1-D energy distances of the projections, and each 1-D one is exactly
    2 int (F_x - F_y)^2 dt for the empirical CDFs. Directions: the midpoint grid of `num_directions` angles on
    [0, pi), a quadrature whose error is O(num_directions^-2) relative (measured: 2.5e-6 at 256 directions for
    two 16000-point moons clouds, against the pairwise sum); everything else is exact.
    """
  x, y = _as_cloud(x, "x"), _as_cloud(y, "y")
  if x.shape[1] != 2 or y.shape[1] != 2:
    raise ValueError(f"the projected energy distance is for 2-D clouds, got {x.shape} and {y.shape}")
  angle = (np.arange(num_directions) + 0.5) * np.pi / num_directions
  theta = np.stack([np.cos(angle), np.sin(angle)])
  total = sum(float(_energy_1d(x @ theta[:, i:i + chunk], y @ theta[:, i:i + chunk]).sum())
              for i in range(0, num_directions, chunk))
  return 0.5 * np.pi * total / num_directions


def random_directions(d: int, num: int, seed: int = 0) -> np.ndarray:
  """Unit vectors drawn uniformly from the sphere in R^d, shape (num, d), float64."""
  g = np.random.default_rng(seed).standard_normal((num, d))
  return g / np.linalg.norm(g, axis=1, keepdims=True)


def _quantiles(sorted_proj: np.ndarray, k: int) -> np.ndarray:
  """Empirical quantiles at the levels u_i = (i + 1/2) / k, i < k, of each column.

    Q(u) = sorted[floor(u * n)], evaluated in integer arithmetic; for k = n this
    is the sorted array itself.
    """
  n = len(sorted_proj)
  idx = (2 * np.arange(k) + 1) * n // (2 * k)
  return sorted_proj[idx]


def sliced_wasserstein2(x: np.ndarray, y: np.ndarray, num_projections: int = 256, seed: int = 0,
                        chunk: int = 16) -> float:
  """Sliced 2-Wasserstein distance between x (n, d) and y (m, d).

    SW2 = sqrt(mean over directions theta of W2^2(<theta, x>, <theta, y>)), the
    directions being `random_directions(d, num_projections, seed)`. Each 1-D W2^2
    is the mean squared difference of the two quantile functions on the grid of
    k = max(n, m) midpoint levels (i + 1/2) / k: for n = m that is the mean squared
    difference of the sorted projections, and it is exact whenever the larger size
    is a multiple of the smaller one (otherwise a midpoint-rule approximation).
    """
  x, y = _as_cloud(x, "x"), _as_cloud(y, "y")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"dimension mismatch: {x.shape} vs {y.shape}")
  theta = random_directions(x.shape[1], num_projections, seed)
  k = max(len(x), len(y))
  w2_sq = []
  for i in range(0, num_projections, chunk):  # memory O((n + m) chunk) for any number of directions
    px = np.sort(x @ theta[i:i + chunk].T, axis=0)
    py = np.sort(y @ theta[i:i + chunk].T, axis=0)
    w2_sq.append(np.mean((_quantiles(px, k) - _quantiles(py, k))**2, axis=0))
  return float(np.sqrt(np.mean(np.concatenate(w2_sq))))


def two_sample_report(samples: np.ndarray,
                      fresh_a: np.ndarray,
                      fresh_b: np.ndarray,
                      num_projections: int = 256,
                      seed: int = 0,
                      block_size: int = 1024) -> dict[str, float]:
  """Energy distance and SW2 of samples vs fresh_a, with their noise floors.

    All three clouds have shape (n, d) with the same n; fresh_a and fresh_b are
    independent draws from the data distribution. `energy` and `sw2` compare
    samples with fresh_a; `energy_floor` and `sw2_floor` compare fresh_a with
    fresh_b, i.e. the values a perfect sampler would get at this sample size.
    Both SW2 values use the same projection directions.
    """
  if not len(samples) == len(fresh_a) == len(fresh_b):
    raise ValueError(f"sizes differ: {len(samples)}, {len(fresh_a)}, {len(fresh_b)}")
  return {
      "energy": energy_distance(samples, fresh_a, block_size),
      "sw2": sliced_wasserstein2(samples, fresh_a, num_projections, seed),
      "energy_floor": energy_distance(fresh_a, fresh_b, block_size),
      "sw2_floor": sliced_wasserstein2(fresh_a, fresh_b, num_projections, seed),
  }


class TrainingEnergy:
  """In-training selection metric for point data: energy distance (and SW2) between `num` samples of the EMA
  parameters (the same noise every time) and `num` reference points drawn once from the data source `ref` under a
  held-out seed, so the points differ from training batches of a toy source and from a benchmark's fresh draws.
  `metric` names the value that picks the best checkpoint."""

  metric = "energy"
  HELD_OUT_SEED = 1_000_003

  def __init__(self, ref: str, num: int, steps: int | None = None):
    from distill import data as data_lib

    source = data_lib.make_source(ref, self.HELD_OUT_SEED)
    if source.spec.kind != "points":
      raise ValueError(f"eval.fid_features='energy' needs point data; {ref} gives {source.spec.kind}")
    self.reference = np.asarray(source.global_batch(0, num)["x"], np.float64)
    self.num, self.steps = num, steps

  def __call__(self, generator, params, key) -> dict:
    samples = np.asarray(generator.generate(params, key, self.num, self.steps), np.float64)
    return {"energy": energy_distance(samples, self.reference), "sw2": sliced_wasserstein2(samples, self.reference)}

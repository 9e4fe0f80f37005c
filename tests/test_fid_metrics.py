"""Tests for the host-side FID metric mathematics: Fréchet distance, streaming stats, precision/recall, KID."""

import numpy as np
import pytest

from distill.evaluation import frechet
from distill.evaluation.frechet import FeatureStats, frechet_distance, frechet_distance_eigh
from distill.evaluation.kid import kernel_inception_distance
from distill.evaluation.precision_recall import precision_recall

BOTH_PATHS = pytest.mark.parametrize("fd", [frechet_distance, frechet_distance_eigh])


def _random_spd(dim, seed, rank=None):
  a = np.random.default_rng(seed).standard_normal((rank or dim, dim))
  return a.T @ a / dim + (0.0 if rank else 0.1 * np.eye(dim))


def _random_orthogonal(dim, seed):
  q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
  return q


# --- Fréchet distance -----------------------------------------------------------------------------------------------


@BOTH_PATHS
def test_frechet_equal_statistics_is_zero(fd):
  mu, sigma = np.random.default_rng(0).standard_normal(64), _random_spd(64, 1)
  assert abs(fd(mu, sigma, mu, sigma)) < 1e-8


@BOTH_PATHS
def test_frechet_identity_covariances_is_squared_mean_distance(fd):
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
  assert fd(mu1, np.eye(32), mu2, np.eye(32)) == pytest.approx(np.sum((mu1 - mu2)**2), rel=1e-12)


@BOTH_PATHS
def test_frechet_diagonal_covariances(fd):
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
  a, b = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
  expected = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(a) - np.sqrt(b))**2)
  assert fd(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@BOTH_PATHS
def test_frechet_one_dimensional(fd):
  expected = 1.5**2 + (np.sqrt(2.0) - np.sqrt(0.5))**2
  assert fd(0.5, 2.0, -1.0, 0.5) == pytest.approx(expected, rel=1e-12)
  value = fd(np.array([0.5]), np.array([[2.0]]), np.array([-1.0]), np.array([[0.5]]))
  assert value == pytest.approx(expected, rel=1e-12)


@BOTH_PATHS
def test_frechet_commuting_full_covariances(fd):
  # Same eigenvectors: sqrt(sigma1 sigma2) = Q diag(sqrt(a b)) Q^T.
  rng = np.random.default_rng(0)
  q = _random_orthogonal(48, 1)
  a, b = rng.uniform(0.01, 5.0, 48), rng.uniform(0.01, 5.0, 48)
  sigma1, sigma2 = (q * a) @ q.T, (q * b) @ q.T
  mu = rng.standard_normal(48)
  expected = np.sum((np.sqrt(a) - np.sqrt(b))**2)
  assert fd(mu, sigma1, mu, sigma2) == pytest.approx(expected, rel=1e-9)


def test_frechet_eigh_path_equals_scipy_path():
  rng = np.random.default_rng(0)
  for seed in range(3):
    mu1, mu2 = rng.standard_normal(64), rng.standard_normal(64)
    sigma1, sigma2 = _random_spd(64, 10 + seed), _random_spd(64, 20 + seed)
    scipy_fd = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert frechet_distance_eigh(mu1, sigma1, mu2, sigma2) == pytest.approx(scipy_fd, rel=1e-8)


def test_frechet_rank_deficient_covariances():
  # Rank 3 of 8: a singular product, whose computed root is complex with rounding-size imaginary parts.
  mu = np.zeros(8)
  sigma1, sigma2 = _random_spd(8, 0, rank=3), _random_spd(8, 1, rank=3)
  scipy_fd = frechet_distance(mu, sigma1, mu, sigma2)
  assert np.isfinite(scipy_fd)
  assert scipy_fd == pytest.approx(frechet_distance_eigh(mu, sigma1, mu, sigma2), rel=1e-6)
  # Singular commuting (diagonal) covariances keep their closed form.
  a, b = np.array([0.0, 0.0, 1.0, 4.0]), np.array([0.0, 9.0, 0.0, 1.0])
  expected = np.sum((np.sqrt(a) - np.sqrt(b))**2)
  for fd in (frechet_distance, frechet_distance_eigh):
    assert fd(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_retries_with_eps_when_root_not_finite(monkeypatch):
  # Recent SciPy returns a finite root for singular PSD products, so force the non-finite first attempt.
  calls = []
  real_sqrtm = frechet._sqrtm

  def flaky_sqrtm(a):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

  monkeypatch.setattr(frechet, "_sqrtm", flaky_sqrtm)
  a, b, eps = np.array([0.0, 1.0, 4.0]), np.array([0.0, 9.0, 1.0]), 1e-6
  value = frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b), eps=eps)
  assert len(calls) == 2
  np.testing.assert_allclose(calls[1], np.diag((a + eps) * (b + eps)), rtol=0, atol=1e-15)
  # The traces are of the unshifted covariances, only the root sees eps.
  expected = a.sum() + b.sum() - 2 * np.sum(np.sqrt((a + eps) * (b + eps)))
  assert value == pytest.approx(expected, rel=1e-12)


def test_frechet_large_imaginary_component_raises():
  # sigma1 sigma2 = -I has the root i I: not a pair of covariances.
  with pytest.raises(ValueError, match="imaginary component 1.0"):
    frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2))


def test_frechet_small_imaginary_component_is_dropped():
  # sqrt(diag(1, -1e-8)) = diag(1, 1e-4 i): below the 1e-3 tolerance, so the real part diag(1, 0) is used.
  value = frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -1e-8]))
  assert value == pytest.approx(2.0 + (1.0 - 1e-8) - 2.0, rel=1e-12)


@BOTH_PATHS
def test_frechet_shape_mismatch_raises(fd):
  with pytest.raises(ValueError, match=r"\(3,\) vs \(4,\)"):
    fd(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match=r"\(3, 3\) vs \(4, 4\)"):
    fd(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


# --- Streaming statistics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_feature_stats_match_numpy(offset):
  rng = np.random.default_rng(0)
  x = offset + rng.standard_normal((1000, 16)) @ rng.standard_normal((16, 16))
  stats = FeatureStats(16)
  start = 0
  for size in (1, 7, 300, 0, 45, 2, 645):
    stats.update(x[start:start + size].astype(np.float64))
    start += size
  assert start == len(x) and stats.n == len(x)
  cov = np.cov(x, rowvar=False)
  np.testing.assert_allclose(stats.mean(), x.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(stats.covariance(), cov, rtol=0, atol=1e-10 * np.abs(cov).max())
  assert stats.mean().dtype == np.float64 and stats.covariance().shape == (16, 16)


def test_feature_stats_large_mean_small_spread():
  # mean 1e3, std 1: the unshifted sum-of-products formula loses ~6 digits here.
  rng = np.random.default_rng(1)
  x = 1e3 + rng.standard_normal((5000, 8))
  stats = FeatureStats(8)
  for chunk in np.array_split(x, [13, 1000, 1001, 4321]):
    stats.update(chunk)
  cov = np.cov(x, rowvar=False)
  np.testing.assert_allclose(stats.covariance(), cov, rtol=0, atol=1e-10 * np.abs(cov).max())
  np.testing.assert_allclose(FeatureStats.from_features(x).covariance(), cov, rtol=0, atol=1e-10)


def test_feature_stats_float32_input():
  x = np.random.default_rng(2).standard_normal((300, 5)).astype(np.float32)
  stats = FeatureStats.from_features(x)
  np.testing.assert_allclose(stats.covariance(), np.cov(x.astype(np.float64), rowvar=False), rtol=0, atol=1e-12)
  assert stats.covariance().dtype == np.float64


def test_feature_stats_errors():
  stats = FeatureStats(4)
  with pytest.raises(ValueError, match=r"\(B, 4\), got \(2, 3\)"):
    stats.update(np.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"\(B, 4\), got \(4,\)"):
    stats.update(np.zeros(4))
  stats.update(np.ones((1, 4)))
  with pytest.raises(ValueError, match="at least 2"):
    stats.covariance()


# --- Precision and recall -------------------------------------------------------------------------------------------


def _brute_force_precision_recall(real, fake, k):
  """Full distance matrices from explicit differences; radius = column k of each sorted row (column 0 is self)."""

  def dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :])**2).sum(-1))

  real_radii = np.sort(dist(real, real), axis=1)[:, k]
  fake_radii = np.sort(dist(fake, fake), axis=1)[:, k]
  precision = np.mean(np.any(dist(fake, real) <= real_radii[None, :], axis=1))
  recall = np.mean(np.any(dist(real, fake) <= fake_radii[None, :], axis=1))
  return precision, recall


def test_precision_recall_identical_sets():
  x = np.random.default_rng(0).standard_normal((200, 10))
  assert precision_recall(x, x.copy()) == {"precision": 1.0, "recall": 1.0}


def test_precision_recall_far_translation():
  x = np.random.default_rng(0).standard_normal((200, 10))
  assert precision_recall(x, x + 1e3) == {"precision": 0.0, "recall": 0.0}


def test_precision_half_near_half_far():
  real = np.random.default_rng(0).standard_normal((200, 10))
  fake = np.concatenate([real[:100], real[:100] + 1e3])
  assert precision_recall(real, fake, batch_size=64)["precision"] == 0.5


@pytest.mark.parametrize("k, precision, recall", [(1, 2 / 6, 3 / 5), (2, 5 / 6, 1.0)])
def test_precision_recall_by_hand_1d(k, precision, recall):
  # k=1: real balls [-1,3] u [9,12] (radius 1 each) hold fakes 3 and 12 on the boundary; fake radii
  # 2, 2, 1, 1, 1, 1 give [1,7] u [11,14] u [19,22], holding reals 1, 2, 11.
  real = np.array([0.0, 1.0, 2.0, 10.0, 11.0])[:, None]
  fake = np.array([3.0, 5.0, 12.0, 13.0, 20.0, 21.0])[:, None]
  result = precision_recall(real, fake, k=k, batch_size=2)
  assert result == {"precision": pytest.approx(precision, abs=1e-15), "recall": pytest.approx(recall, abs=1e-15)}
  assert (result["precision"], result["recall"]) == pytest.approx(_brute_force_precision_recall(real, fake, k))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k):
  rng = np.random.default_rng(k)
  real = rng.standard_normal((157, 8))
  fake = 0.8 * rng.standard_normal((131, 8)) + 0.4
  result = precision_recall(real, fake, k=k, batch_size=32)
  precision, recall = _brute_force_precision_recall(real, fake, k)
  assert 0.0 < precision < 1.0 and 0.0 < recall < 1.0
  assert result == {"precision": precision, "recall": recall}


def test_precision_recall_errors():
  with pytest.raises(ValueError, match="got \\(10, 3\\) and \\(10, 4\\)"):
    precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
  with pytest.raises(ValueError, match="more than k=3"):
    precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# --- KID ------------------------------------------------------------------------------------------------------------


def _brute_force_mmd2(x, y):
  """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, one pair at a time."""
  m, d = x.shape

  def kernel(a, b):
    return (sum(a[i] * b[i] for i in range(d)) / d + 1.0)**3

  xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2.0 * xy


def test_kid_matches_brute_force_on_full_subsets():
  # subset_size = n: every subset is a permutation of all samples, on which the estimate does not depend.
  rng = np.random.default_rng(0)
  real, fake = rng.standard_normal((12, 5)), 0.7 * rng.standard_normal((12, 5)) + 0.3
  result = kernel_inception_distance(real, fake, num_subsets=4, subset_size=12)
  assert result["kid"] == pytest.approx(_brute_force_mmd2(real, fake), rel=1e-12)
  assert result["kid_std"] < 1e-12
  # A subset_size above n is clipped to n.
  clipped = kernel_inception_distance(real, fake, num_subsets=1, subset_size=1000)
  assert clipped["kid"] == pytest.approx(result["kid"], rel=1e-12)


def test_kid_grows_with_shift():
  rng = np.random.default_rng(0)
  real = rng.standard_normal((600, 16))
  fresh = rng.standard_normal((600, 16))
  kids = [
      kernel_inception_distance(real, fresh + shift, num_subsets=20, subset_size=200)["kid"] for shift in (0, 0.3, 1)
  ]
  assert abs(kids[0]) < 0.05 * kids[1]
  assert kids[2] > kids[1] > 0


def test_kid_seeded():
  rng = np.random.default_rng(0)
  real, fake = rng.standard_normal((100, 4)), rng.standard_normal((80, 4)) + 0.2
  first = kernel_inception_distance(real, fake, num_subsets=5, subset_size=30, seed=3)
  assert first == kernel_inception_distance(real, fake, num_subsets=5, subset_size=30, seed=3)
  assert first["kid_std"] > 0
  assert first != kernel_inception_distance(real, fake, num_subsets=5, subset_size=30, seed=4)

"""Tests for distill.evaluation: two-sample distances and PNG helpers."""

import math

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist
from scipy.stats import norm

from distill.evaluation import (energy_distance, image_grid, projected_energy_distance, random_directions,
                                save_image_grid, save_scatter, sliced_wasserstein2, two_sample_report)
from distill.images import to_float, to_uint8


def _cloud(n, d=2, seed=0, shift=0.0):
  return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_energy_identical_samples_zero_and_floor_positive():
  x = _cloud(2000)
  # The empirical measures coincide: the V-statistic is exactly 0 (up to float rounding).
  assert abs(energy_distance(x, x)) < 1e-12
  # Two independent draws of one distribution: a small positive floor of order 1/n.
  floor = energy_distance(x, _cloud(2000, seed=9))
  assert 0.0 < floor < 0.01


def _gaussian_energy(mu):
  """Energy distance between N(0, 1) and N(mu, 1): X - Y ~ N(-mu, 2), E|X - X'| = 2 / sqrt(pi)."""
  e_xy = math.sqrt(2) * math.sqrt(2 / math.pi) * math.exp(-mu**2 / 4) + mu * (1 - 2 * norm.cdf(-mu / math.sqrt(2)))
  return 2 * e_xy - 4 / math.sqrt(math.pi)


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_energy_matches_gaussian_closed_form_stratified(mu):
  # Quantile-stratified "samples" converge at O(1/n), so the tolerance can be tight.
  q = norm.ppf((np.arange(4000) + 0.5) / 4000)[:, None]
  assert energy_distance(q, q + mu) == pytest.approx(_gaussian_energy(mu), abs=2e-3)


def test_energy_matches_gaussian_closed_form_monte_carlo():
  # At n = 4000 and mu = 1 the standard error over seeds is about 0.03; allow 3 of them.
  mu, n = 1.0, 4000
  x = _cloud(n, d=1, seed=1)
  y = _cloud(n, d=1, seed=2, shift=mu)
  assert energy_distance(x, y) == pytest.approx(_gaussian_energy(mu), abs=0.09)


def test_energy_symmetric():
  x, y = _cloud(300, seed=3), _cloud(200, seed=4, shift=0.5)
  assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)


def test_energy_chunked_equals_brute_force():
  x, y = _cloud(53, d=3, seed=5), _cloud(41, d=3, seed=6, shift=0.3)
  brute = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
  assert energy_distance(x, y, block_size=7) == pytest.approx(brute, rel=1e-9, abs=1e-12)
  assert energy_distance(x, y) == pytest.approx(brute, rel=1e-9, abs=1e-12)


def test_projected_energy_is_the_pairwise_energy_in_2d():
  """pi/2 times the direction-mean of exact 1-D energy distances: equal to the all-pairs V-statistic up to the angle
  quadrature, O(K^-2); unequal sizes and a near-zero distance (same distribution) included."""
  x, y = _cloud(700, seed=7), 1.2 * _cloud(400, seed=8, shift=0.2)
  brute = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
  assert projected_energy_distance(x, y, num_directions=1024) == pytest.approx(brute, rel=1e-6)
  assert projected_energy_distance(x, y, num_directions=64) == pytest.approx(brute, rel=1e-4)
  assert projected_energy_distance(x, y, num_directions=64) != pytest.approx(brute, rel=1e-7)  # a real quadrature
  z = _cloud(900, seed=10)
  pairwise = energy_distance(x, z, method="pairwise")
  assert energy_distance(x, z, method="projected") == pytest.approx(pairwise, rel=1e-4)
  assert projected_energy_distance(x, x) == pytest.approx(0.0, abs=1e-15)


def test_energy_method_auto_projects_only_large_2d_clouds(monkeypatch):
  from distill.evaluation import distances

  x, y = _cloud(300, seed=11), _cloud(200, seed=12, shift=0.4)
  exact = energy_distance(x, y, method="pairwise")
  assert energy_distance(x, y) == exact  # 60000 pairs: pairwise
  monkeypatch.setattr(distances, "MAX_PAIRWISE", 1000)
  assert energy_distance(x, y) == projected_energy_distance(x, y) != exact
  x3, y3 = _cloud(300, d=3, seed=11), _cloud(200, d=3, seed=12)
  assert energy_distance(x3, y3) == energy_distance(x3, y3, method="pairwise")  # 3-D is never projected
  with pytest.raises(ValueError, match="for 2-D clouds"):
    energy_distance(x3, y3, method="projected")
  with pytest.raises(ValueError, match="unknown energy distance method 'sliced'"):
    energy_distance(x, y, method="sliced")


def test_sw2_pure_shift_exact():
  x, shift = _cloud(500, seed=7), np.array([1.5, -0.5])
  theta = random_directions(2, 64, seed=3)
  expected = math.sqrt(np.mean((theta @ shift)**2))
  assert sliced_wasserstein2(x, x + shift, num_projections=64, seed=3) == pytest.approx(expected, rel=1e-9)


def test_sw2_pure_shift_expectation():
  d, shift = 3, np.array([2.0, 1.0, -1.0])
  x = _cloud(200, d=d, seed=8)
  sw2 = sliced_wasserstein2(x, x + shift, num_projections=8192, seed=0)
  assert sw2**2 == pytest.approx(shift @ shift / d, rel=0.05)


def test_sw2_zero_for_identical_and_permutation_invariant():
  x, y = _cloud(400, seed=9), _cloud(400, seed=10, shift=0.7)
  perm = np.random.default_rng(0).permutation(len(x))
  assert sliced_wasserstein2(x, x) == 0.0
  assert sliced_wasserstein2(x[perm], x) == 0.0
  assert sliced_wasserstein2(x[perm], y) == pytest.approx(sliced_wasserstein2(x, y), rel=1e-12)


def test_sw2_unequal_sizes_exact_for_multiples():
  x, y = _cloud(150, seed=11), _cloud(100, seed=12, shift=0.4)
  assert sliced_wasserstein2(np.repeat(x, 2, axis=0), x) == 0.0
  # Quantile grid is symmetric in the two arguments.
  assert sliced_wasserstein2(x, y) == pytest.approx(sliced_wasserstein2(y, x), rel=1e-12)


def test_two_sample_report():
  a, b = _cloud(500, seed=13), _cloud(500, seed=14)
  far = _cloud(500, seed=15, shift=2.0)
  report = two_sample_report(far, a, b, num_projections=64)
  assert set(report) == {"energy", "sw2", "energy_floor", "sw2_floor"}
  assert report["energy"] > 10 * abs(report["energy_floor"])
  assert report["sw2"] > 5 * report["sw2_floor"]
  with pytest.raises(ValueError):
    two_sample_report(far[:400], a, b)


def test_image_grid_shape_and_placement():
  images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 28, 28, 1), np.uint8)
  grid = image_grid(images, pad=2)
  assert grid.shape == (3 * 28 + 4 * 2, 4 * 28 + 5 * 2, 1) and grid.dtype == np.uint8
  assert np.all(grid[2:30, 2:30] == 0) and np.all(grid[32:60, 2:30] == 4)
  assert np.all(grid[62:90, 92:120] == 255)  # empty 12th slot keeps the pad value


def test_to_uint8():
  np.testing.assert_array_equal(to_uint8(np.array([-1.0, 1.0, 0.0])), [0, 255, 128])
  np.testing.assert_array_equal(to_uint8(np.array([-2.0, 2.0])), [0, 255])
  every_byte = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(to_uint8(to_float(every_byte)), every_byte)  # the two directions are inverse


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_image_grid(tmp_path, channels, mode):
  images = np.random.default_rng(0).integers(0, 256, (10, 28, 28, channels), dtype=np.uint8)
  path = tmp_path / "grid.png"
  save_image_grid(str(path), images)
  with Image.open(path) as png:
    assert png.mode == mode
    assert png.size == (4 * 28 + 5 * 2, 3 * 28 + 4 * 2)
    np.testing.assert_array_equal(np.asarray(png).reshape(image_grid(images).shape), image_grid(images))


def test_save_scatter(tmp_path):
  path = tmp_path / "scatter.png"
  save_scatter(str(path), {
      "data": _cloud(300),
      "model": _cloud(300, seed=1, shift=1.0)
  },
               title="2-D",
               limits=(-4.0, 4.0))
  with Image.open(path) as png:
    assert png.format == "PNG" and min(png.size) > 100

"""BOSS phase 1: jump costs along reference Euler paths and the Bellman-optimal step selection (samplers.bellman)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill.analytic import empirical_denoiser, gaussian_denoiser, gaussian_mixture_denoiser
from samplers.adaptive import rf_velocity
from samplers.bellman import bellman_sigmas, bellman_steps, euler_jump_costs
from samplers.ode import euler

EPS = 1e-3
K_MAX = 60
T_FINE = np.linspace(EPS, 1.0, K_MAX + 1)
S_MAX = (1.0 - EPS) / EPS


def _path_cost(cost, indices):
  return sum(cost[i, j] for i, j in zip(indices[:-1], indices[1:]))


def _brute_force(cost, num_steps):
  last = cost.shape[0] - 1
  paths = [(0, *inner, last) for inner in itertools.combinations(range(1, last), num_steps - 1)]
  costs = [_path_cost(cost, p) for p in paths]
  best = int(np.argmin(costs))
  return np.asarray(paths[best]), costs[best]


@pytest.mark.parametrize("num_steps", [1, 2, 3, 5, 12])
def test_dp_equals_brute_force(num_steps):
  cost = np.random.default_rng(num_steps).uniform(0.0, 1.0, (13, 13))
  cost[np.tril_indices(13)] = np.inf
  indices, total = bellman_steps(cost, num_steps)
  ref_indices, ref_total = _brute_force(cost, num_steps)
  np.testing.assert_array_equal(indices, ref_indices)
  assert total == pytest.approx(ref_total, rel=1e-12)
  assert total == pytest.approx(_path_cost(cost, indices), rel=1e-12)
  if num_steps == 12:
    np.testing.assert_array_equal(indices, np.arange(13))


def test_invalid_step_counts():
  cost = np.zeros((5, 5))
  for bad in (0, 5):
    with pytest.raises(ValueError, match=r"num_steps must be in \[1, 4\]"):
      bellman_steps(cost, bad)


def test_straight_flow_costs_nothing():
  """One data point: every path is a straight line, so every Euler jump lands on the reference trajectory."""
  velocity = rf_velocity(empirical_denoiser(np.array([[1.0, -2.0]])))
  cost = euler_jump_costs(velocity, jax.random.normal(jax.random.key(0), (32, 2)), T_FINE)
  assert cost.shape == (K_MAX + 1, K_MAX + 1) and cost.dtype == np.float64
  assert np.all(np.isinf(cost[np.tril_indices(K_MAX + 1)]))
  assert np.max(cost[np.triu_indices(K_MAX + 1, k=1)]) < 1e-9
  _, total = bellman_steps(cost, 3)
  assert total < 1e-9


def test_costs_match_direct_jumps_and_sigma_grid_reproduces_them():
  """c[i, j] is the one-jump error against the fine Euler path; Euler in EDM on bellman_sigmas makes those jumps."""
  den = gaussian_mixture_denoiser(np.array([[1.5, 1.5], [-1.5, -1.5]]), np.array([0.2, 0.4]), np.array([1.0, 1.0]))
  velocity = rf_velocity(den)
  z = jax.random.normal(jax.random.key(1), (64, 2))
  cost = euler_jump_costs(velocity, z, T_FINE)
  assert np.max(np.diag(cost, k=1)) < 1e-10  # one fine step is the reference step itself
  fine = euler(den, z * (1.0 + S_MAX), jnp.asarray(bellman_sigmas(T_FINE, np.arange(K_MAX + 1))))
  indices = np.array([0, 20, 45, K_MAX])
  sigmas = bellman_sigmas(T_FINE, indices)
  assert sigmas[-1] == 0.0 and np.all(np.diff(sigmas) < 0)
  np.testing.assert_allclose(sigmas[:-1], (1.0 - T_FINE[indices[:-1]]) / T_FINE[indices[:-1]], rtol=1e-6)
  # The last jump starts from the reference state at node 45: its cost is the distance to the fine endpoint.
  x45 = euler(den, z * (1.0 + S_MAX), jnp.asarray(bellman_sigmas(T_FINE, np.arange(46))))
  jump = euler(den, x45, jnp.asarray(bellman_sigmas(T_FINE, [45, K_MAX])))
  np.testing.assert_allclose(np.mean(np.sum((jump - fine)**2, axis=1)), cost[45, K_MAX], rtol=1e-3)


@pytest.mark.parametrize("num_steps", [3, 4, 5, 6])
def test_bellman_path_beats_uniform_on_curved_flows(num_steps):
  """Gaussian data: measured K-step Euler error (against the fine Euler endpoint, on fresh noise) is lower on the
    Bellman grid. Mixture data: the optimal summed jump cost is <= the uniform path's (always true, uniform being
    feasible); the measured end-point error need not follow, since the cost sums local errors only."""
  uniform = np.linspace(0, K_MAX, num_steps + 1).round().astype(int)
  z_fit, z_test = (jax.random.normal(jax.random.key(k), (128, 2)) for k in (2, 3))
  fine_grid = jnp.asarray(bellman_sigmas(T_FINE, np.arange(K_MAX + 1)))

  den = gaussian_denoiser(np.array([1.0, -2.0]), 0.1)
  indices, _ = bellman_steps(euler_jump_costs(rf_velocity(den), z_fit, T_FINE), num_steps)
  fine = euler(den, z_test * (1.0 + S_MAX), fine_grid)

  def err(idx):
    out = euler(den, z_test * (1.0 + S_MAX), jnp.asarray(bellman_sigmas(T_FINE, idx)))
    return float(np.mean(np.sum((out - fine)**2, axis=1)))

  assert err(indices) < 0.5 * err(uniform)

  means = np.array([[1.5, 1.5], [-1.5, 1.5], [1.5, -1.5], [-1.5, -1.5]])
  cost = euler_jump_costs(rf_velocity(gaussian_mixture_denoiser(means, np.full(4, 0.2), np.ones(4))), z_fit, T_FINE)
  indices, total = bellman_steps(cost, num_steps)
  assert total <= _path_cost(cost, uniform)
  assert indices[0] == 0 and indices[-1] == K_MAX and np.all(np.diff(indices) > 0)

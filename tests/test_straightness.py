"""Discretised straightness S of RF flows (distill.evaluation.straightness)."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import quad

from distill.analytic import empirical_denoiser, gaussian_denoiser
from distill.evaluation.straightness import straightness
from samplers.adaptive import rf_velocity

EPS = 1e-3


def _z(seed=0, shape=(64, 3)):
  return jax.random.normal(jax.random.key(seed), shape)


def _reference(velocity_fn, z, t_grid):
  """Stored-velocity version: per-sample weighted mean of ||c - v_i||^2 / D and every v_i."""
  x, vs = z, []
  for t, t_next in zip(t_grid[:-1], t_grid[1:]):
    vs.append(velocity_fn(x, t))
    x = x + (t_next - t) * vs[-1]
  span, w = t_grid[-1] - t_grid[0], np.diff(t_grid) / (t_grid[-1] - t_grid[0])
  chord = (x - z) / span
  per_sample = sum(wi * jnp.mean((chord - v)**2, axis=1) for wi, v in zip(w, vs))
  return per_sample, x, vs, span, w


def test_constant_velocity_is_exactly_straight():
  c = jnp.asarray(np.random.default_rng(0).standard_normal((64, 3)), jnp.float32)
  t_grid = np.sort(np.random.default_rng(1).uniform(EPS, 1.0, 17))
  s, z1 = straightness(lambda x, t: c, _z(), t_grid)
  assert float(s) == 0.0
  np.testing.assert_allclose(z1, _z() + (t_grid[-1] - t_grid[0]) * c, rtol=1e-5, atol=1e-5)


def test_single_point_data_flow_is_straight():
  """The RF velocity of one data point moves along straight lines: v = (x1 - x) / (1 - t) is constant on a path."""
  velocity = rf_velocity(empirical_denoiser(np.array([[1.0, -2.0, 0.5]])))
  s, z1 = straightness(velocity, _z(), np.linspace(EPS, 1.0, 33))
  assert float(s) < 1e-10
  np.testing.assert_allclose(z1, np.broadcast_to([1.0, -2.0, 0.5], (64, 3)), atol=1e-5)


def test_two_point_data_flow_is_curved_and_matches_stored_velocity_reference():
  velocity = rf_velocity(empirical_denoiser(np.array([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])))
  t_grid = np.linspace(EPS, 1.0, 41)
  s, z1 = straightness(velocity, _z(), t_grid)
  per_sample, x_end, *_ = _reference(velocity, _z(), t_grid)
  assert float(s) > 0.05
  np.testing.assert_allclose(float(s), float(jnp.mean(per_sample)), rtol=1e-4)
  np.testing.assert_allclose(z1, x_end, rtol=1e-5, atol=1e-5)


def test_gaussian_data_matches_hand_calculation():
  """Data N(mu, s^2 I): the exact RF path is x_t = t mu + a(t) z with a(t) = sqrt(t^2 s^2 + (1 - t)^2), so per
    sample S = ||z||^2 / D * (mean_[eps,1] a'^2 - abar^2), abar = (a(1) - a(eps)) / (1 - eps)."""
  mu, std = np.array([0.5, -1.0, 2.0]), 0.3
  a = lambda t: np.sqrt(t**2 * std**2 + (1 - t)**2)
  da = lambda t: (t * std**2 - (1 - t)) / a(t)
  span = 1.0 - EPS
  factor = quad(lambda t: da(t)**2, EPS, 1.0)[0] / span - ((a(1.0) - a(EPS)) / span)**2
  with jax.enable_x64(True):
    z = jnp.asarray(_z(), jnp.float64)
    x_eps = EPS * mu + a(EPS) * z
    s, z1 = straightness(rf_velocity(gaussian_denoiser(mu, std)), x_eps, np.linspace(EPS, 1.0, 2001))
    expected = float(jnp.mean(jnp.sum(z**2, axis=1))) / 3 * factor
    np.testing.assert_allclose(float(s), expected, rtol=5e-3)  # Euler bias: 1.8e-3 here, 4e-2 with 100 steps
    np.testing.assert_allclose(z1, mu + std * z, rtol=2e-3, atol=2e-3)


def test_one_step_error_identity_and_jensen_bound():
  """Exactly: ||z + T v_0 - Z1||^2 = T^2 ||v_0 - c||^2 <= T^2 sum_i w_i ||v_0 - v_i||^2 = T^2 (||v_0 - c||^2 + S_b)."""
  with jax.enable_x64(True):
    velocity = rf_velocity(empirical_denoiser(np.array([[2.0, 0.0, 0.0], [0.0, -1.0, 1.0], [-1.0, 0.5, 0.0]])))
    z = jnp.asarray(_z(), jnp.float64)
    t_grid = np.concatenate([np.linspace(EPS, 0.5, 8), np.linspace(0.55, 1.0, 20)])  # non-uniform
    s, z1 = straightness(velocity, z, t_grid)
    per_sample, _, vs, span, w = _reference(velocity, z, t_grid)
    one_step = jnp.mean((z + span * vs[0] - z1)**2, axis=1)
    chord = (z1 - z) / span
    np.testing.assert_allclose(one_step, span**2 * jnp.mean((vs[0] - chord)**2, axis=1), rtol=1e-9)
    jensen = span**2 * sum(wi * jnp.mean((vs[0] - v)**2, axis=1) for wi, v in zip(w, vs))
    np.testing.assert_allclose(jensen, one_step + span**2 * per_sample, rtol=1e-9)
    np.testing.assert_allclose(float(s), float(jnp.mean(per_sample)), rtol=1e-9)


def test_one_step_error_is_not_bounded_by_straightness():
  """A velocity that switches once, v = a on the first step and b afterwards: S = w_0 (1 - w_0) ||a - b||^2 / D
    but the one-step error is T^2 (1 - w_0)^2 ||a - b||^2 / D, larger than S whenever T^2 (1 - w_0) > w_0."""
  a, b = jnp.ones((1, 4)), -jnp.ones((1, 4))
  t_grid = np.linspace(0.0, 1.0, 11)
  s, z1 = straightness(lambda x, t: jnp.where(t < 0.05, a, b), jnp.zeros((1, 4)), t_grid)
  np.testing.assert_allclose(float(s), 0.1 * 0.9 * 4.0, rtol=1e-5)
  one_step = float(jnp.mean((a - z1)**2))
  np.testing.assert_allclose(one_step, 0.9**2 * 4.0, rtol=1e-5)
  assert one_step > float(s)

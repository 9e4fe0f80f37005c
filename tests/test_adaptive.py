"""Adaptive RK45 on Gaussian data N(MU, s^2 I), whose PF-ODE flow is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from distill.diffusion import expand
from samplers.adaptive import rf_velocity, rk45, rk45_solver
from samplers.grids import edm_sigmas
from samplers.ode import euler

MU = 0.3
STDS = np.array([1.0, 0.5, 0.2, 0.05], np.float32)  # per-row data scale, passed as cond; small = stiffer near data
GRID = edm_sigmas(12)  # 80 -> 0.002 -> 0


def per_row_gaussian(x, sigma, cond):
  """Exact denoiser when row b's data is N(MU, cond[b]^2 I)."""
  var = expand(cond, x)**2
  return MU + var / (var + expand(sigma, x)**2) * (x - MU)


def exact(x, stds, sigma0, sigma1):
  """Closed-form flow from sigma0 to sigma1 > 0; for sigma1 = 0 the Euler step into 0 from GRID[-2] is D there."""
  s = np.asarray(stds, np.float64)[:, None]
  x = np.asarray(x, np.float64)
  if sigma1 > 0:
    return MU + np.sqrt(s**2 + sigma1**2) / np.sqrt(s**2 + sigma0**2) * (x - MU)
  x_last = exact(x, stds, sigma0, GRID[-2])
  return MU + s**2 / (s**2 + GRID[-2].astype(np.float64)**2) * (x_last - MU)


def rel_err(out, ref):
  """Per-row max error relative to the row's largest reference entry."""
  return np.max(np.abs(np.asarray(out, np.float64) - ref), axis=1) / np.max(np.abs(ref), axis=1)


_rk45 = jax.jit(rk45, static_argnums=0, static_argnames="max_steps")


def _noise(seed=0, batch=len(STDS)):
  return GRID[0] * jax.random.normal(jax.random.key(seed), (batch, 16))


@pytest.mark.parametrize("ends_in_zero", [True, False])
def test_matches_closed_form(ends_in_zero):
  sigmas = GRID if ends_in_zero else GRID[:-1]
  x = _noise()
  out, nfe = _rk45(per_row_gaussian, x, sigmas, jnp.asarray(STDS))
  assert out.shape == x.shape and out.dtype == jnp.float32 and nfe.dtype == jnp.int32 and nfe.shape == (4,)
  # rtol = atol = 1e-5 bounds local errors; the global error stays within 1e-4 (a few 1e-5 typically).
  assert np.all(rel_err(out, exact(x, STDS, GRID[0], sigmas[-1])) < 1e-4)


def test_matches_scipy_solve_ivp_float64():
  """Same steps as scipy's RK45 in float64: identical evaluation counts and endpoints to rounding."""
  with jax.enable_x64(True):
    sigmas = GRID[:-1].astype(np.float64)
    stds = jnp.asarray(STDS, jnp.float64)
    x = jnp.asarray(_noise(), jnp.float64)
    out, nfe = rk45(per_row_gaussian, x, sigmas, stds)
    t0, t1 = 1 / (1 + sigmas[0]), 1 / (1 + sigmas[-1])
    for b in range(len(STDS)):
      v = rf_velocity(per_row_gaussian, stds[b:b + 1])
      sol = solve_ivp(lambda t, y: np.asarray(v(jnp.asarray(y)[None], t))[0], (t0, t1),
                      np.asarray(x[b]) / (1 + sigmas[0]), rtol=1e-5, atol=1e-5)
      assert int(nfe[b]) == sol.nfev
      np.testing.assert_allclose(out[b], sol.y[:, -1] / t1, rtol=1e-12, atol=1e-12)


def test_far_fewer_evaluations_than_euler():
  x = _noise()
  ref = exact(x, STDS, GRID[0], 0.0)
  out, nfe = _rk45(per_row_gaussian, x, GRID, jnp.asarray(STDS))
  steps = 10 * int(np.max(nfe))
  euler_out = jax.jit(euler, static_argnums=0)(per_row_gaussian, x, edm_sigmas(steps), jnp.asarray(STDS))
  # Ten times rk45's largest per-row budget still leaves Euler well over 10x less accurate on every row.
  assert np.all(rel_err(euler_out, ref) > 10 * rel_err(out, ref))


def test_rows_are_independent_and_get_their_own_step_counts():
  x = _noise(batch=8)
  stds = jnp.asarray(np.tile(STDS, 2))
  out, nfe = _rk45(per_row_gaussian, x, GRID, stds)
  for b in (0, 3, 6):
    alone, nfe_alone = _rk45(per_row_gaussian, x[b:b + 1], GRID, stds[b:b + 1])
    np.testing.assert_allclose(alone[0], out[b], rtol=1e-6, atol=1e-6)
    assert int(nfe_alone[0]) == int(nfe[b])
  # Narrow data (small std) bends the flow near sigma_min: more steps than the std = 1 rows.
  assert nfe[3] > nfe[0] and nfe[7] > nfe[4]
  # nfe = 2 (initial step) + 6 per attempted step + 1 (Euler step into sigma = 0).
  assert np.all((np.asarray(nfe) - 3) % 6 == 0)


def test_tighter_tolerance_is_more_accurate():
  x = _noise()
  ref = exact(x, STDS, GRID[0], GRID[-2])
  errs, nfes = [], []
  for tol in (1e-3, 1e-4, 1e-5):
    out, nfe = _rk45(per_row_gaussian, x, GRID[:-1], jnp.asarray(STDS), rtol=tol, atol=tol)
    errs.append(np.max(rel_err(out, ref)))
    nfes.append(int(np.sum(nfe)))
  assert errs[0] > errs[1] > errs[2] and nfes[0] < nfes[1] < nfes[2]


def test_solver_wrapper_jit_and_edge_cases():
  x = _noise()
  cond = jnp.asarray(STDS)
  solver = jax.jit(rk45_solver(), static_argnums=0)
  np.testing.assert_array_equal(solver(per_row_gaussian, x, GRID, cond), _rk45(per_row_gaussian, x, GRID, cond)[0])
  # A one-step grid [sigma0, 0] is a single Euler step into 0, as in samplers.ode.euler.
  one = np.array([GRID[0], 0.0], np.float32)
  out, nfe = _rk45(per_row_gaussian, x, one, cond)
  np.testing.assert_array_equal(out, per_row_gaussian(x, jnp.full(4, GRID[0]), cond))
  assert np.all(np.asarray(nfe) == 1)
  # max_steps bounds the attempts; rows stopped early report what they used.
  _, nfe = _rk45(per_row_gaussian, x, GRID, cond, max_steps=2)
  assert np.all(np.asarray(nfe) <= 2 + 6 * 2 + 1)

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from samplers import (
    SOLVERS,
    classifier_free_guidance,
    edm_sigmas,
    explicit_sigmas,
    initial_noise,
    make_sigmas,
    multistep_student,
    nfe,
    renoise,
    sample_keys,
    solve,
    uniform_t_sigmas,
)

# Gaussian data x0 ~ N(0, S^2 I): exact denoiser and exact PF-ODE flow.
S = 0.7


def gauss_denoise(x, sigma, cond=None):
  return S**2 / (S**2 + sigma**2) * x


def exact_flow(x, sigma0, sigma1):
  return x * np.sqrt(S**2 + sigma1**2) / np.sqrt(S**2 + sigma0**2)


def _run(solver, x, sigmas):
  return jax.jit(SOLVERS[solver], static_argnums=0)(gauss_denoise, x, jnp.asarray(sigmas))


# (a) accuracy on a fine grid ending in 0.
@pytest.mark.parametrize("solver,rtol", [("euler", 5e-3), ("heun", 5e-5), ("dpm_solver_2m", 5e-5)])
def test_solvers_match_exact_flow(solver, rtol):
  sigmas = edm_sigmas(1000)
  x = sigmas[0] * jax.random.normal(jax.random.key(0), (4, 3, 5))
  out = _run(solver, x, sigmas)
  assert out.dtype == jnp.float32 and out.shape == x.shape
  np.testing.assert_allclose(out, exact_flow(np.asarray(x), sigmas[0], 0.0), rtol=rtol, atol=1e-6)


# (b) convergence order on a grid without the trailing 0 (float64 for clean slopes).
@pytest.mark.parametrize("solver,lo,hi", [("euler", 0.8, 1.3), ("heun", 1.7, 2.6), ("dpm_solver_2m", 1.7, 2.6)])
def test_convergence_order(solver, lo, hi):
  with jax.enable_x64(True):
    errs = []
    for n in (32, 64):
      sigmas = edm_sigmas(n, sigma_min=0.05)[:-1].astype(np.float64)
      x = jnp.full((1, 4), sigmas[0], jnp.float64)
      out = _run(solver, x, sigmas)
      errs.append(np.max(np.abs(np.asarray(out) - exact_flow(np.asarray(x), sigmas[0], sigmas[-1]))))
  assert lo <= np.log2(errs[0] / errs[1]) <= hi


def _kdiffusion_dpmpp_2m(denoise, x, sigmas):
  """Reference: k-diffusion's sample_dpmpp_2m loop, in numpy float64."""
  old = None
  for i in range(len(sigmas) - 1):
    den = denoise(x, sigmas[i])
    t, t_next = -np.log(sigmas[i]), -np.log(sigmas[i + 1]) if sigmas[i + 1] > 0 else np.inf
    h = t_next - t
    if old is None or sigmas[i + 1] == 0:
      x = (np.exp(-t_next) / np.exp(-t)) * x - np.expm1(-h) * den
    else:
      r = (t - -np.log(sigmas[i - 1])) / h
      x = (np.exp(-t_next) / np.exp(-t)) * x - np.expm1(-h) * ((1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old)
    old = den
  return x


def test_dpm_solver_2m_matches_reference():
  sigmas = edm_sigmas(6)
  x = np.asarray(sigmas[0] * jax.random.normal(jax.random.key(1), (2, 3)))

  def nonlinear(x, s, cond=None):
    return jnp.tanh(x) / (1 + s)

  ref = _kdiffusion_dpmpp_2m(lambda x, s: np.tanh(x) / (1 + s), x.astype(np.float64), sigmas.astype(np.float64))
  out = SOLVERS["dpm_solver_2m"](nonlinear, jnp.asarray(x), jnp.asarray(sigmas))
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


# (c) grids.
def test_edm_grid():
  s = edm_sigmas(10, sigma_min=0.002, sigma_max=80.0)
  assert s.dtype == np.float32 and s.shape == (11,)
  np.testing.assert_allclose([s[0], s[-2]], [80.0, 0.002], rtol=1e-6)
  assert s[-1] == 0 and np.all(np.diff(s) < 0)
  np.testing.assert_array_equal(edm_sigmas(1, sigma_max=5.0), [5.0, 0.0])


def test_uniform_t_grid():
  s = uniform_t_sigmas(8, eps=1e-3)
  assert s.shape == (9,) and s[-1] == 0 and np.all(np.diff(s) < 0)
  np.testing.assert_allclose(s[0], 999.0, rtol=1e-6)


def test_explicit_grid_and_dispatch():
  np.testing.assert_array_equal(explicit_sigmas([10.0, 1.0, 0.1]), np.float32([10, 1, 0.1, 0]))
  np.testing.assert_array_equal(explicit_sigmas([10.0, 1.0, 0.0]), np.float32([10, 1, 0]))
  for bad in ([1.0, 2.0], [1.0, 1.0], [1.0, -0.5], [np.inf, 1.0], [], [0.0], [2.0, 0.0, 1.0]):
    with pytest.raises(ValueError):
      explicit_sigmas(bad)
  np.testing.assert_array_equal(make_sigmas("explicit", None, values=[3.0, 1.0]), np.float32([3, 1, 0]))
  np.testing.assert_array_equal(make_sigmas("edm", 5, sigma_max=10.0), edm_sigmas(5, sigma_max=10.0))
  np.testing.assert_array_equal(make_sigmas("uniform_t", 5), uniform_t_sigmas(5))
  with pytest.raises(ValueError, match="edm, uniform_t, explicit"):
    make_sigmas("cosine", 5)


# (d) NFE counts.
def test_nfe():
  s = edm_sigmas(18)
  assert nfe("heun", s) == 35
  assert nfe("euler", s) == nfe("dpm_solver_2m", s) == 18
  assert nfe("heun", s[:-1]) == 2 * 17
  assert nfe("student", explicit_sigmas([80.0, 1.0])) == 2
  with pytest.raises(ValueError):
    nfe("rk4", s)


# (e) classifier-free guidance.
def test_cfg():
  calls = []

  def label_linear(x, sigma, cond):
    calls.append(x.shape[0])
    return x / (1 + sigma**2) + 0.1 * cond[:, None].astype(x.dtype)

  x = jax.random.normal(jax.random.key(2), (3, 4))
  labels = jnp.array([1, 4, 7], jnp.int32)
  null, scale, sigma = 10, 2.5, jnp.float32(0.5)
  guided = classifier_free_guidance(label_linear, scale, null)(x, sigma, labels)
  expected = x / 1.25 + 0.1 * (null + scale * (labels - null))[:, None]
  np.testing.assert_allclose(guided, expected, rtol=1e-5, atol=1e-5)
  assert calls == [6]  # one batched call over 2B

  sigma_b = jnp.array([0.1, 0.5, 2.0])
  plain = classifier_free_guidance(lambda x, s, c: label_linear(x, s[:, None], c), 1.0, null)(x, sigma_b, labels)
  np.testing.assert_allclose(plain, label_linear(x, sigma_b[:, None], labels), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError):
    classifier_free_guidance(label_linear, scale, null)(x, sigma, None)


# (f) student sampler.
def test_student_constant_and_formula():
  x = jax.random.normal(jax.random.key(3), (2, 3))
  noises = jax.random.normal(jax.random.key(4), (2, 2, 3))
  sigmas = jnp.array([80.0, 2.0, 0.5, 0.0])
  const = multistep_student(lambda x, s, c: jnp.full_like(x, 0.25), x, sigmas, noises)
  np.testing.assert_allclose(const, 0.25)

  def den(x, s, c):
    return jnp.sin(x) / (1 + s)

  expected = den(x, 80.0, None)
  for k, s in enumerate([2.0, 0.5]):
    expected = den(expected + s * noises[k], s, None)
  np.testing.assert_allclose(jax.jit(multistep_student, static_argnums=0)(den, x, sigmas, noises), expected, rtol=1e-6)


def test_student_single_step_calls_once():
  calls = []

  def den(x, s, c):
    calls.append(1)
    return 2 * x + s

  x = jnp.ones((2, 3))
  out = multistep_student(den, x, jnp.array([5.0]), jnp.zeros((0, 2, 3)))
  assert len(calls) == 1
  np.testing.assert_allclose(out, 7.0)


# (g) per-sample randomness.
def _label_denoise(x, sigma, cond):
  return gauss_denoise(x, sigma) + 0.01 * cond[:, None, None].astype(x.dtype)


@pytest.mark.parametrize("solver,sigmas", [("heun", edm_sigmas(6)), ("student", explicit_sigmas([80.0, 3.0, 0.5]))])
def test_solve_batch_invariance(solver, sigmas):
  key, shape = jax.random.key(5), (3, 2)
  idx = jnp.arange(8, dtype=jnp.int32)
  labels = idx % 3
  run = jax.jit(lambda i, c: solve(_label_denoise, key, i, shape, sigmas, solver=solver, cond=c))
  full = run(idx, labels)
  assert full.shape == (8, *shape) and full.dtype == jnp.float32
  halves = jnp.concatenate([run(idx[:4], labels[:4]), run(idx[4:], labels[4:])])
  np.testing.assert_allclose(full, halves, atol=1e-6)
  perm = jnp.array([5, 2, 7, 0, 3, 1, 6, 4])
  np.testing.assert_allclose(run(idx[perm], labels[perm]), full[perm], atol=1e-6)


def test_solve_device_invariance():
  key, shape, sigmas = jax.random.key(6), (4,), edm_sigmas(4)
  idx = jnp.arange(16, dtype=jnp.int32)
  mesh = Mesh(np.array(jax.devices()), ("d",))
  sharded = jax.device_put(idx, NamedSharding(mesh, P("d")))
  run = jax.jit(lambda i: solve(gauss_denoise, key, i, shape, sigmas, solver="dpm_solver_2m"))
  np.testing.assert_allclose(run(sharded), run(idx), atol=1e-6)


def test_noise_streams():
  keys = sample_keys(jax.random.key(7), jnp.arange(3))
  z0, z1 = initial_noise(keys, (5,)), renoise(keys, 0, (5,))
  assert z0.shape == z1.shape == (3, 5)
  np.testing.assert_array_equal(
      z0[1], jax.random.normal(jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 1), 0), (5,)))
  assert not np.allclose(z0, z1)

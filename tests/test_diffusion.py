"""Noise paths, conversions between parameterisations, EDM preconditioning and the Network spec identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill import diffusion
from distill.networks import Network
from distill.objectives.base import ParamGroup
from distill.objectives.teacher_training import EDMDenoising, FlowMatching

MLP = {"name": "mlp", "dim": 2, "width": 16, "depth": 1, "emb_dim": 8}
SIGMAS = np.array([1e-3, 0.02, 0.3, 1.0, 2.5, 17.0, 80.0])


def _rand(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape)


def _perturbed_params(net, seed=0, scale=0.1):
  """Fresh parameters plus noise, so zero-initialised output layers give non-zero outputs."""
  params = net.init(jax.random.key(seed))
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(treedef, [a + scale * jax.random.normal(k, a.shape, a.dtype)
                                      for a, k in zip(leaves, keys)])


# ----- time variables and states (float64, exact up to rounding) ------------------------------------------------


def test_time_round_trips():
  """sigma <-> RF t and sigma <-> log-SNR are mutually inverse; t = 1 is sigma = 0."""
  with jax.enable_x64(True):
    sigma = jnp.asarray(SIGMAS, jnp.float64)
    t = diffusion.rf_time_from_sigma(sigma)
    np.testing.assert_allclose(t, 1.0 / (1.0 + SIGMAS), rtol=1e-14)
    np.testing.assert_allclose(diffusion.sigma_from_rf_time(t), SIGMAS, rtol=1e-12)
    lam = diffusion.logsnr_from_sigma(sigma)
    np.testing.assert_allclose(lam, -2.0 * np.log(SIGMAS), rtol=1e-14)
    np.testing.assert_allclose(diffusion.sigma_from_logsnr(lam), SIGMAS, rtol=1e-13)
    assert float(diffusion.sigma_from_rf_time(jnp.float64(1.0))) == 0.0
    assert float(diffusion.rf_time_from_sigma(jnp.float64(0.0))) == 1.0
    # VP coefficients: alpha^2 + s^2 = 1, alpha = 1 / sqrt(1 + sigma^2), s / alpha = sigma.
    alpha, s = diffusion.vp_alpha_sigma(lam)
    np.testing.assert_allclose(alpha**2 + s**2, 1.0, rtol=1e-14)
    np.testing.assert_allclose(alpha, 1.0 / np.sqrt(1.0 + SIGMAS**2), rtol=1e-12)
    np.testing.assert_allclose(s / alpha, SIGMAS, rtol=1e-12)


def test_states_agree_across_paths():
  """One (x0, noise) pair gives x0 + sigma n (EDM), t x0 + (1 - t) n (RF), alpha x0 + s n (VP), and round-trips."""
  with jax.enable_x64(True):
    x0, n = _rand(0, (len(SIGMAS), 3, 2)), _rand(1, (len(SIGMAS), 3, 2))
    sigma = jnp.asarray(SIGMAS)
    sig = SIGMAS[:, None, None]
    x_edm = jnp.asarray(x0 + sig * n)
    t = diffusion.rf_time_from_sigma(sigma)
    x_rf = diffusion.rf_from_edm(x_edm, sigma)
    t_np = 1.0 / (1.0 + sig)
    np.testing.assert_allclose(x_rf, t_np * x0 + (1.0 - t_np) * n, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(diffusion.edm_from_rf(x_rf, t), x_edm, rtol=1e-12, atol=1e-14)
    lam = diffusion.logsnr_from_sigma(sigma)
    x_vp = diffusion.vp_from_edm(x_edm, sigma)
    alpha, s = 1.0 / np.sqrt(1.0 + sig**2), sig / np.sqrt(1.0 + sig**2)
    np.testing.assert_allclose(x_vp, alpha * x0 + s * n, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(diffusion.edm_from_vp(x_vp, lam), x_edm, rtol=1e-12, atol=1e-14)
    # A scalar time broadcasts against the whole batch.
    np.testing.assert_allclose(diffusion.rf_from_edm(x_edm, 2.0), np.asarray(x_edm) / 3.0, rtol=1e-15)


def test_prediction_conversions():
  """eps <-> x0 on the EDM path, RF velocity <-> x1, Salimans v <-> x0, against the generating (x0, noise)."""
  with jax.enable_x64(True):
    x0, n = _rand(2, (len(SIGMAS), 4)), _rand(3, (len(SIGMAS), 4))
    sig = SIGMAS[:, None]
    sigma = jnp.asarray(SIGMAS)
    x_edm = jnp.asarray(x0 + sig * n)
    np.testing.assert_allclose(diffusion.eps_from_denoised(x_edm, sigma, x0), n, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(diffusion.denoised_from_eps(x_edm, sigma, n), x0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(diffusion.ode_derivative(x_edm, sigma, x0), n, rtol=1e-9, atol=1e-9)

    t = 1.0 / (1.0 + SIGMAS)
    x_rf = jnp.asarray(t[:, None] * x0 + (1.0 - t[:, None]) * n)
    v = diffusion.velocity_from_denoised(x_rf, t, x0)
    np.testing.assert_allclose(v, x0 - n, rtol=1e-9, atol=1e-9)  # RF velocity x1 - z
    np.testing.assert_allclose(diffusion.denoised_from_velocity(x_rf, t, x0 - n), x0, rtol=1e-12, atol=1e-12)

    lam = diffusion.logsnr_from_sigma(sigma)
    alpha, s = 1.0 / np.sqrt(1.0 + sig**2), sig / np.sqrt(1.0 + sig**2)
    x_vp = jnp.asarray(alpha * x0 + s * n)
    v_sal = diffusion.v_salimans_from_denoised(x_vp, lam, x0)
    np.testing.assert_allclose(v_sal, alpha * n - s * x0, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(diffusion.denoised_from_v_salimans(x_vp, lam, alpha * n - s * x0), x0,
                               rtol=1e-12, atol=1e-12)


def test_expand_shapes():
  """Scalars stay scalars; (B,) times become (B, 1, ...) in the dtype of x."""
  x = jnp.zeros((3, 4, 5, 2), jnp.float32)
  assert diffusion.expand(jnp.asarray(2.0), x).shape == ()
  e = diffusion.expand(jnp.arange(3), x)
  assert e.shape == (3, 1, 1, 1) and e.dtype == jnp.float32


# ----- EDM preconditioning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_edm_preconditioning_closed_forms(sigma_data):
  """Karras et al. Table 1 values, the sigma = 0 limit, and lambda(sigma) = 1 / c_out^2."""
  sd = sigma_data
  c_skip, c_out, c_in, c_noise = map(np.asarray, diffusion.edm_preconditioning(SIGMAS, sd))
  np.testing.assert_allclose(c_skip, sd**2 / (SIGMAS**2 + sd**2), rtol=1e-6)
  np.testing.assert_allclose(c_out, SIGMAS * sd / np.sqrt(SIGMAS**2 + sd**2), rtol=1e-6)
  np.testing.assert_allclose(c_in, 1.0 / np.sqrt(SIGMAS**2 + sd**2), rtol=1e-6)
  np.testing.assert_allclose(c_noise, np.log(SIGMAS) / 4.0, rtol=1e-6)
  # Unit-variance training target (x0 - c_skip x) / c_out: c_out^2 = sd^2 (1 - c_skip)^2 + c_skip^2 sigma^2.
  np.testing.assert_allclose(c_out**2, sd**2 * (1 - c_skip) ** 2 + c_skip**2 * SIGMAS**2, rtol=1e-5)
  # ... and the network input has unit variance: c_in^2 (sd^2 + sigma^2) = 1.
  np.testing.assert_allclose(c_in**2 * (sd**2 + SIGMAS**2), 1.0, rtol=1e-6)
  np.testing.assert_allclose(diffusion.edm_loss_weight(SIGMAS, sd), 1.0 / c_out.astype(np.float64) ** 2, rtol=1e-5)
  s0, o0, i0, _ = diffusion.edm_preconditioning(0.0, sd)
  assert float(s0) == 1.0 and float(o0) == 0.0
  np.testing.assert_allclose(float(i0), 1.0 / sd, rtol=1e-7)


def test_edm_parameterization_denoised():
  """EDMParameterization: network_inputs = (c_in x, c_noise broadcast to (B,)), denoised = c_skip x + c_out F."""
  p = diffusion.make_parameterization("edm", sigma_data=0.5)
  x, raw = _rand(4, (len(SIGMAS), 2)).astype(np.float32), _rand(5, (len(SIGMAS), 2)).astype(np.float32)
  sig = SIGMAS[:, None]
  denom = sig**2 + 0.25
  x_in, c_noise = p.network_inputs(jnp.asarray(x), jnp.asarray(SIGMAS, jnp.float32))
  np.testing.assert_allclose(x_in, x / np.sqrt(denom), rtol=1e-6)
  np.testing.assert_allclose(c_noise, np.log(SIGMAS) / 4, rtol=1e-6)
  np.testing.assert_allclose(p.denoised(jnp.asarray(x), jnp.asarray(SIGMAS, jnp.float32), raw),
                             0.25 / denom * x + 0.5 * sig / np.sqrt(denom) * raw, rtol=1e-5, atol=1e-6)
  _, c_scalar = p.network_inputs(jnp.asarray(x), 2.0)
  assert c_scalar.shape == (len(SIGMAS),)
  with pytest.raises(ValueError, match="unknown parameterization"):
    diffusion.make_parameterization("eps")


def test_lognormal_sigma_moments():
  """ln sigma ~ N(p_mean, p_std^2): sample mean/std of ln sigma on 100k draws (tolerances ~5 standard errors)."""
  n, p_mean, p_std = 100_000, -1.2, 1.2
  sigma = np.asarray(diffusion.sample_lognormal_sigma(jax.random.key(0), (n,), p_mean, p_std), np.float64)
  assert sigma.shape == (n,) and np.all(sigma > 0)
  log_sigma = np.log(sigma)
  assert abs(log_sigma.mean() - p_mean) < 5 * p_std / np.sqrt(n)
  assert abs(log_sigma.std() - p_std) < 5 * p_std / np.sqrt(2 * n)
  other = np.log(np.asarray(diffusion.sample_lognormal_sigma(jax.random.key(1), (n,), 0.5, 0.3)))
  assert abs(other.mean() - 0.5) < 0.01 and abs(other.std() - 0.3) < 0.01


# ----- Network spec identities ------------------------------------------------------------------------------------


def test_edm_network_velocity_identity():
  """EDM network: velocity(x_rf, t) = (D(x_rf / t; (1 - t) / t) - x_rf) / (1 - t), D built from the raw F."""
  net = Network.create(MLP, {"name": "edm", "sigma_data": 0.5})
  params = _perturbed_params(net)
  x_rf = jnp.asarray(_rand(6, (5, 2)), jnp.float32)
  t = jnp.asarray([0.05, 0.3, 0.5, 0.8, 0.97], jnp.float32)
  v = np.asarray(net.velocity(params, x_rf, t), np.float64)
  assert v.shape == (5, 2) and np.abs(v).max() > 0
  # D from the raw network with independently computed EDM coefficients.
  t_np = np.asarray(t, np.float64)
  sigma = (1 - t_np) / t_np
  x_edm = np.asarray(x_rf, np.float64) / t_np[:, None]
  denom = sigma**2 + 0.25
  raw = net.raw(params, jnp.asarray(x_edm / np.sqrt(denom)[:, None], jnp.float32),
                jnp.asarray(np.log(sigma) / 4, jnp.float32))
  d = (0.25 / denom)[:, None] * x_edm + (0.5 * sigma / np.sqrt(denom))[:, None] * np.asarray(raw, np.float64)
  expected = (d - np.asarray(x_rf, np.float64)) / (1 - t_np)[:, None]
  np.testing.assert_allclose(v, expected, rtol=2e-4, atol=2e-5)
  # The same through Network.denoise, and with a scalar t.
  d_net = net.denoise(params, x_rf / t[:, None], (1 - t) / t)
  np.testing.assert_allclose(v, (np.asarray(d_net) - np.asarray(x_rf)) / (1 - t_np)[:, None], rtol=1e-5, atol=1e-5)
  v_scalar = net.velocity(params, x_rf, 0.3)
  np.testing.assert_allclose(v_scalar[1], v[1], rtol=1e-5, atol=1e-6)


def test_velocity_network_denoise_identity():
  """Velocity network: D(x; sigma) = x / (1 + sigma) + sigma / (1 + sigma) v(x / (1 + sigma), 1 / (1 + sigma))."""
  net = Network.create(MLP, {"name": "velocity", "time_scale": 999.0})
  params = _perturbed_params(net)
  x = jnp.asarray(3.0 * _rand(7, (5, 2)), jnp.float32)
  sigma = jnp.asarray([0.01, 0.2, 1.0, 5.0, 80.0], jnp.float32)
  d = np.asarray(net.denoise(params, x, sigma), np.float64)
  s = np.asarray(sigma, np.float64)[:, None]
  x_t = x / (1 + sigma[:, None])
  t = 1 / (1 + sigma)
  v = np.asarray(net.velocity(params, x_t, t), np.float64)
  assert np.abs(v).max() > 0
  np.testing.assert_allclose(d, np.asarray(x, np.float64) / (1 + s) + s / (1 + s) * v, rtol=1e-5, atol=1e-5)
  # velocity is the raw output at c_noise = 999 t.
  np.testing.assert_allclose(v, net.raw(params, x_t, 999.0 * t), rtol=1e-6, atol=1e-7)


def test_gaussian_data_optimal_denoiser_edm_loss():
  """x0 ~ N(0, sigma_data^2): the optimal denoiser is c_skip x (raw F = 0, a fresh network's zero output layer),
  and its expected EDM loss lambda(sigma) E|D - x0|^2 is exactly 1 at every sigma."""
  sd = 0.5
  net = Network.create(MLP, {"name": "edm", "sigma_data": sd})
  params = net.init(jax.random.key(0))
  assert not np.any(np.asarray(params["out"]["kernel"][...])) and not np.any(np.asarray(params["out"]["bias"][...]))
  x = jnp.asarray(_rand(8, (4, 2)), jnp.float32)
  sigma = jnp.asarray([0.1, 0.5, 2.0, 10.0], jnp.float32)
  np.testing.assert_allclose(net.denoise(params, x, sigma), sd**2 / (sd**2 + sigma[:, None] ** 2) * x, rtol=1e-6)

  n = 100_000
  batch = {"x": jnp.asarray(sd * _rand(9, (n, 2)), jnp.float32)}
  objective = EDMDenoising(groups={"model": ParamGroup(net, {})}, sigma_data=sd)
  loss, _ = objective.loss("model", {"model": params}, {}, None, batch, jax.random.key(1), 0)
  # Per example: lambda * posterior variance * chi2_2 / 2, mean 1 and variance 1 -> standard error 0.003.
  assert abs(float(loss) - 1.0) < 0.02, float(loss)


def test_zero_velocity_network_flow_matching_loss():
  """A fresh velocity network outputs v = 0, so the flow-matching loss is E|x1 - z|^2 = S^2 + 1 per dimension."""
  S = 0.7
  net = Network.create(MLP, {"name": "velocity"})
  params = net.init(jax.random.key(0))
  n = 100_000
  batch = {"x": jnp.asarray(S * _rand(10, (n, 2)), jnp.float32)}
  objective = FlowMatching(groups={"model": ParamGroup(net, {})})
  loss, _ = objective.loss("model", {"model": params}, {}, None, batch, jax.random.key(2), 0)
  # Variance of (x1 - z)^2 per coordinate is 2 (S^2 + 1)^2; 2n coordinates -> standard error ~0.007.
  assert abs(float(loss) - (S**2 + 1)) < 0.04, float(loss)

"""Noise paths, EDM preconditioning and closed-form conversions between parameterisations.

Conventions (see specs/reflow_trajectory_family.md §0.2):
- EDM / VE path: x = x0 + sigma * n, data at sigma = 0, noise at sigma_max. This is the toolkit's canonical
  sampling space: every network is exposed as a denoiser D(x; sigma) ~= E[x0 | x].
- Rectified-flow (RF) path: x_t = t * x1 + (1 - t) * z, noise at t = 0, data at t = 1, velocity v = x1 - z.
  RF <-> EDM: sigma = (1 - t) / t, t = 1 / (1 + sigma), x_edm = x_rf / t.
- VP path: x = alpha * x0 + s * eps with alpha^2 + s^2 = 1 and log-SNR lambda = log(alpha^2 / s^2);
  sigma = s / alpha = exp(-lambda / 2), x_edm = x_vp / alpha.
All functions broadcast a per-example time of shape () or (B,) against x of shape (B, ...).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def expand(t: jax.Array, x: jax.Array) -> jax.Array:
  """Reshape a scalar or per-example (B,) time so it broadcasts against x of shape (B, ...)."""
  t = jnp.asarray(t, x.dtype)
  if t.ndim == 0:
    return t
  return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


# ----- time variables -------------------------------------------------------------------------------------------


def sigma_from_rf_time(t):
  """RF time t in (0, 1] -> EDM sigma = (1 - t) / t (t = 1 is data, sigma = 0)."""
  return (1.0 - t) / t


def rf_time_from_sigma(sigma):
  """EDM sigma >= 0 -> RF time t = 1 / (1 + sigma)."""
  return 1.0 / (1.0 + sigma)


def sigma_from_logsnr(logsnr):
  """VP log-SNR lambda -> EDM sigma = exp(-lambda / 2)."""
  return jnp.exp(-0.5 * logsnr)


def logsnr_from_sigma(sigma):
  """EDM sigma > 0 -> VP log-SNR lambda = -2 log sigma."""
  return -2.0 * jnp.log(sigma)


def vp_alpha_sigma(logsnr):
  """VP coefficients (alpha, s) = (sqrt(sigmoid(lambda)), sqrt(sigmoid(-lambda)))."""
  return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))


# ----- states on the different paths ----------------------------------------------------------------------------


def rf_from_edm(x_edm, sigma):
  """EDM state at sigma -> RF state x_rf = x_edm / (1 + sigma) at t = 1 / (1 + sigma)."""
  return x_edm / (1.0 + expand(sigma, x_edm))


def edm_from_rf(x_rf, t):
  """RF state at time t -> EDM state x_edm = x_rf / t at sigma = (1 - t) / t."""
  return x_rf / expand(t, x_rf)


def vp_from_edm(x_edm, sigma):
  """EDM state -> VP state x_vp = alpha * x_edm with alpha = 1 / sqrt(1 + sigma^2)."""
  return x_edm / jnp.sqrt(1.0 + expand(sigma, x_edm) ** 2)


def edm_from_vp(x_vp, logsnr):
  """VP state at log-SNR lambda -> EDM state x_vp / alpha."""
  alpha, _ = vp_alpha_sigma(expand(logsnr, x_vp))
  return x_vp / alpha


# ----- predictions ----------------------------------------------------------------------------------------------


def eps_from_denoised(x_edm, sigma, x0):
  """Noise prediction on the EDM path: eps = (x - x0) / sigma."""
  return (x_edm - x0) / expand(sigma, x_edm)


def denoised_from_eps(x_edm, sigma, eps):
  """x0 = x - sigma * eps on the EDM path (the same eps on every Gaussian path)."""
  return x_edm - expand(sigma, x_edm) * eps


def velocity_from_denoised(x_rf, t, x1):
  """RF velocity v = (x1_hat - x_t) / (1 - t), for t < 1."""
  return (x1 - x_rf) / (1.0 - expand(t, x_rf))


def denoised_from_velocity(x_rf, t, v):
  """x1_hat = x_t + (1 - t) v on the RF path."""
  return x_rf + (1.0 - expand(t, x_rf)) * v


def v_salimans_from_denoised(x_vp, logsnr, x0):
  """Salimans-Ho v-prediction v = alpha * eps - s * x0 from a VP state and a data prediction."""
  alpha, s = vp_alpha_sigma(expand(logsnr, x_vp))
  eps = (x_vp - alpha * x0) / s
  return alpha * eps - s * x0


def denoised_from_v_salimans(x_vp, logsnr, v):
  """x0 = alpha * z - s * v on the VP path."""
  alpha, s = vp_alpha_sigma(expand(logsnr, x_vp))
  return alpha * x_vp - s * v


def ode_derivative(x_edm, sigma, x0):
  """EDM probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma."""
  return (x_edm - x0) / expand(sigma, x_edm)


# ----- EDM preconditioning and training distributions -----------------------------------------------------------


def edm_preconditioning(sigma, sigma_data: float):
  """EDM (Karras et al. 2022, Table 1) coefficients (c_skip, c_out, c_in, c_noise) for sigma of any shape."""
  sigma = jnp.asarray(sigma, jnp.float32)
  denom = sigma**2 + sigma_data**2
  c_skip = sigma_data**2 / denom
  c_out = sigma * sigma_data / jnp.sqrt(denom)
  c_in = 1.0 / jnp.sqrt(denom)
  c_noise = 0.25 * jnp.log(sigma)
  return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma, sigma_data: float):
  """EDM loss weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2."""
  return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_lognormal_sigma(rng, shape, p_mean: float = -1.2, p_std: float = 1.2):
  """EDM training noise levels: ln sigma ~ N(p_mean, p_std^2)."""
  return jnp.exp(p_mean + p_std * jax.random.normal(rng, shape))


# ----- output parameterisations: network output -> denoiser -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EDMParameterization:
  """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) with c_noise = ln(sigma) / 4."""

  sigma_data: float = 0.5
  name: str = "edm"

  def network_inputs(self, x_edm, sigma):
    """(scaled network input, c_noise) for the raw network F."""
    _, _, c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
    return x_edm * expand(c_in, x_edm), jnp.broadcast_to(c_noise, x_edm.shape[:1])

  def denoised(self, x_edm, sigma, raw):
    c_skip, c_out, _, _ = edm_preconditioning(sigma, self.sigma_data)
    return expand(c_skip, x_edm) * x_edm + expand(c_out, x_edm) * raw


@dataclasses.dataclass(frozen=True)
class VelocityParameterization:
  """The network predicts the RF velocity v(x_t, t); c_noise = time_scale * t (RF convention 999 t).

  D(x; sigma) = x_t + (1 - t) v(x_t, t) with t = 1 / (1 + sigma), x_t = x / (1 + sigma).
  """

  time_scale: float = 999.0
  name: str = "velocity"

  def network_inputs(self, x_edm, sigma):
    sigma = jnp.asarray(sigma, jnp.float32)
    t = rf_time_from_sigma(sigma)
    return rf_from_edm(x_edm, sigma), jnp.broadcast_to(self.time_scale * t, x_edm.shape[:1])

  def denoised(self, x_edm, sigma, raw):
    t = rf_time_from_sigma(jnp.asarray(sigma, jnp.float32))
    return denoised_from_velocity(rf_from_edm(x_edm, sigma), t, raw)


@dataclasses.dataclass(frozen=True)
class ConsistencyParameterization:
  """Consistency models (Song et al. 2023, spec reflow_trajectory_family.md §7.2): f(x; sigma) = c_skip x + c_out F
  with the boundary moved to sigma_min, c_skip = sd^2 / ((sigma - sigma_min)^2 + sd^2) and c_out = sd (sigma -
  sigma_min) / sqrt(sigma^2 + sd^2), so that f(x; sigma_min) = x exactly. F's inputs (c_in x, ln(sigma) / 4) are
  EDM's, so a consistency student starts from an EDM teacher's parameters."""

  sigma_data: float = 0.5
  sigma_min: float = 0.002
  name: str = "consistency"

  def network_inputs(self, x_edm, sigma):
    return EDMParameterization(self.sigma_data).network_inputs(x_edm, sigma)

  def denoised(self, x_edm, sigma, raw):
    sigma = jnp.asarray(sigma, jnp.float32)
    sd2 = self.sigma_data**2
    c_skip = sd2 / ((sigma - self.sigma_min) ** 2 + sd2)
    c_out = self.sigma_data * (sigma - self.sigma_min) / jnp.sqrt(sigma**2 + sd2)
    return expand(c_skip, x_edm) * x_edm + expand(c_out, x_edm) * raw


@dataclasses.dataclass(frozen=True)
class SignalParameterization:
  """BOOT's student (spec reflow_trajectory_family.md §3): g(eps, level) = sigma_data F(eps, ln(level + sigma_min)
  / 4) is the signal y = x - level * eps of the teacher trajectory that starts from noise eps (x = sigma_max eps on the
  EDM path) at `level`; its signal at level 0 is the trajectory's sample. As a sampler network it is a one-step
  generator, D(x; sigma) = g(x / sigma, 0)."""

  sigma_data: float = 0.5
  sigma_min: float = 0.002
  name: str = "signal"

  def signal_inputs(self, eps, level):
    """(network input, c_noise) of g(eps, level); level () or (B,)."""
    level = jnp.asarray(level, jnp.float32)
    return eps, jnp.broadcast_to(0.25 * jnp.log(level + self.sigma_min), eps.shape[:1])

  def network_inputs(self, x_edm, sigma):
    return self.signal_inputs(x_edm / expand(sigma, x_edm), 0.0)

  def denoised(self, x_edm, sigma, raw):
    del x_edm, sigma
    return self.sigma_data * raw


PARAMETERIZATIONS = {"edm": EDMParameterization, "velocity": VelocityParameterization,
                     "consistency": ConsistencyParameterization, "signal": SignalParameterization}


def make_parameterization(name: str, **kwargs):
  """Build an output parameterisation by name (edm, velocity, consistency or signal)."""
  if name not in PARAMETERIZATIONS:
    raise ValueError(f"unknown parameterization {name!r}; choose one of {sorted(PARAMETERIZATIONS)}")
  return PARAMETERIZATIONS[name](**kwargs)

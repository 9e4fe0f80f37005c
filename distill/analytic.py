"""Exact denoisers of closed-form data distributions, as training-free teachers for tests and toy experiments.

Each returns denoise(x, sigma, cond=None) -> E[x0 | x0 + sigma * n = x] (EDM/VE convention) for x of shape
(B, *shape) and sigma > 0, a scalar or a per-sample (B,) array; cond is ignored. The RF velocity of any of them is
v(x_rf, t) = (D(x_rf / t; (1 - t) / t) - x_rf) / (1 - t) (samplers.adaptive.rf_velocity).
"""
import jax
import jax.numpy as jnp

from distill.diffusion import expand


def _flat(x):
  return x.reshape(x.shape[0], -1)


def _per_sample(sigma, x):
  """Sigma as a (B, 1) column (or a scalar) against flattened samples of shape (B, D)."""
  sigma = jnp.asarray(sigma, x.dtype)
  return sigma if sigma.ndim == 0 else sigma[:, None]


def gaussian_denoiser(mu, std):
  """Data N(mu, std^2 I): D(x; sigma) = mu + std^2 / (std^2 + sigma^2) (x - mu); mu, std broadcast to a sample."""

  def denoise(x, sigma, cond=None):
    del cond
    var = jnp.square(jnp.asarray(std, x.dtype))
    mean = jnp.asarray(mu, x.dtype)
    return mean + var / (var + jnp.square(expand(sigma, x))) * (x - mean)

  return denoise


def empirical_denoiser(points):
  """Data = the empirical distribution of `points` (N, *shape): D(x; sigma) = sum_i w_i points_i.

    w = softmax_i(-||x - points_i||^2 / (2 sigma^2)), evaluated as softmax_i((x . p_i - ||p_i||^2 / 2) / sigma^2)
    (the ||x||^2 term is common to all i and dropped; one (B, N) matmul, no (B, N, D) differences). In RF
    coordinates this is SlimFlow's AnalyticFlow: v(x_rf, t) = (sum_i w_i p_i - x_rf) / (1 - t) with
    w = softmax_i(-||x_rf - t p_i||^2 / (2 (1 - t)^2)).
    """

  def denoise(x, sigma, cond=None):
    del cond
    p = jnp.asarray(points, x.dtype).reshape(len(points), -1)
    xf = _flat(x)
    logits = (xf @ p.T - 0.5 * jnp.sum(jnp.square(p), axis=1)) / jnp.square(_per_sample(sigma, xf))
    return (jax.nn.softmax(logits, axis=1) @ p).reshape(x.shape)

  return denoise


def gaussian_mixture_denoiser(means, stds, weights):
  """Data = sum_m weights_m N(means_m, stds_m^2 I): the exact posterior mean under noise level sigma.

    means (M, *shape), stds (M,), weights (M,) non-negative (normalised here). With v_m = stds_m^2 + sigma^2 and
    responsibilities r_m proportional to weights_m N(x; means_m, v_m I),
    D(x; sigma) = sum_m r_m (means_m + stds_m^2 / v_m (x - means_m)).
    """

  def denoise(x, sigma, cond=None):
    del cond
    mu = jnp.asarray(means, x.dtype).reshape(len(means), -1)  # (M, D)
    var0 = jnp.square(jnp.asarray(stds, x.dtype))  # (M,)
    log_w = jnp.log(jnp.asarray(weights, x.dtype))
    xf = _flat(x)
    var = var0 + jnp.square(_per_sample(sigma, xf))  # (M,) or (B, M)
    diff = xf[:, None, :] - mu[None]  # (B, M, D)
    log_r = log_w - 0.5 * xf.shape[1] * jnp.log(var) - 0.5 * jnp.sum(jnp.square(diff), axis=2) / var
    r = jax.nn.softmax(log_r, axis=1)  # (B, M); the weights' normalisation cancels here
    posterior = mu[None] + (var0 / var)[..., None] * diff  # per-component posterior means, (B, M, D)
    return jnp.einsum("bm,bmd->bd", r, posterior).reshape(x.shape)

  return denoise

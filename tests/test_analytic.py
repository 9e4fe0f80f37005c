"""Exact denoisers of Gaussian, Gaussian-mixture and empirical data (distill.analytic)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from distill.analytic import empirical_denoiser, gaussian_denoiser, gaussian_mixture_denoiser
from samplers.grids import edm_sigmas
from samplers.ode import heun

MEANS = np.array([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]])
STDS = np.array([0.3, 0.6, 0.1])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def _rand(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape)


def gmm_log_density(x, sigma, means, stds, weights):
  """log p_sigma(x) of one sample x (D,) under the mixture convolved with N(0, sigma^2 I), in closed form."""
  var = stds**2 + sigma**2
  d = x.shape[0]
  log_comp = -0.5 * jnp.sum((x - means)**2, axis=1) / var - 0.5 * d * jnp.log(2 * jnp.pi * var)
  return logsumexp(jnp.log(weights) + log_comp)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0, 40.0])
def test_gmm_denoiser_satisfies_tweedie(sigma):
  """D(x; sigma) = x + sigma^2 grad log p_sigma(x), with the score by autodiff of the closed-form density."""
  with jax.enable_x64(True):
    x = jnp.asarray(sigma * _rand(0, (6, 2)) + MEANS[[0, 1, 2, 0, 1, 2]])
    score = jax.vmap(jax.grad(gmm_log_density), in_axes=(0, None, None, None, None))(
        x, sigma, jnp.asarray(MEANS), jnp.asarray(STDS), jnp.asarray(WEIGHTS))
    out = gaussian_mixture_denoiser(MEANS, STDS, WEIGHTS)(x, sigma)
    np.testing.assert_allclose(out, x + sigma**2 * score, rtol=1e-10, atol=1e-10)


def test_gmm_tweedie_on_image_shaped_samples_with_per_sample_sigma():
  """Samples of shape (2, 3): the dimension enters the responsibilities through log(std^2 + sigma^2)."""
  with jax.enable_x64(True):
    means, stds, weights = _rand(1, (3, 2, 3)), np.array([0.2, 0.9, 0.5]), np.array([1.0, 2.0, 1.0])
    sigma = jnp.asarray([0.1, 0.5, 1.0, 4.0])
    x = jnp.asarray(_rand(2, (4, 2, 3)))
    log_p = lambda xb, s: gmm_log_density(xb.ravel(), s, jnp.asarray(means.reshape(3, -1)), jnp.asarray(stds),
                                          jnp.asarray(weights / weights.sum()))
    score = jax.vmap(jax.grad(log_p))(x, sigma)
    out = gaussian_mixture_denoiser(means, stds, weights)(x, sigma)
    np.testing.assert_allclose(out, x + sigma[:, None, None]**2 * score, rtol=1e-10, atol=1e-10)


def test_empirical_denoiser_satisfies_tweedie_and_equals_zero_width_mixture():
  with jax.enable_x64(True):
    points = _rand(3, (5, 2, 2))
    sigma = jnp.asarray([0.05, 0.3, 1.0, 10.0])
    x = jnp.asarray(_rand(4, (4, 2, 2)))
    out = empirical_denoiser(points)(x, sigma)
    log_p = lambda xb, s: gmm_log_density(xb.ravel(), s, jnp.asarray(points.reshape(5, -1)), jnp.zeros(5),
                                          jnp.full(5, 0.2))
    score = jax.vmap(jax.grad(log_p))(x, sigma)
    np.testing.assert_allclose(out, x + sigma[:, None, None]**2 * score, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out, gaussian_mixture_denoiser(points, np.zeros(5), np.ones(5))(x, sigma),
                               rtol=1e-9, atol=1e-9)


def test_empirical_denoiser_at_tiny_sigma_returns_the_nearest_point():
  points = _rand(5, (16, 3, 2, 2)).astype(np.float32)
  x = jnp.asarray(points[[3, 7, 11]] + 0.2 * _rand(6, (3, 3, 2, 2)), jnp.float32)
  nearest = np.argmin(np.sum((np.asarray(x)[:, None] - points[None])**2, axis=(2, 3, 4)), axis=1)
  np.testing.assert_array_equal(nearest, [3, 7, 11])
  out = empirical_denoiser(points)(x, 1e-3)
  np.testing.assert_allclose(out, points[nearest], atol=1e-6)


@pytest.mark.parametrize("sigma", [0.01, 1.0, jnp.asarray([0.1, 2.0, 30.0])])
def test_gaussian_denoiser_equals_one_component_mixture(sigma):
  mu, std = np.array([0.5, -1.0, 2.0, 0.0]), 0.4
  x = jnp.asarray(_rand(7, (3, 4)), jnp.float32)
  np.testing.assert_allclose(gaussian_denoiser(mu, std)(x, sigma),
                             gaussian_mixture_denoiser(mu[None], [std], [1.0])(x, sigma), rtol=1e-5, atol=1e-6)


def test_heun_on_the_empirical_denoiser_memorises_the_data():
  """The PF-ODE of an empirical distribution carries every noise sample onto one of the data points."""
  points = _rand(8, (8, 2, 2)).astype(np.float32)
  sigmas = edm_sigmas(64)
  x = sigmas[0] * jax.random.normal(jax.random.key(0), (32, 2, 2))
  out = np.asarray(jax.jit(heun, static_argnums=0)(empirical_denoiser(points), x, jnp.asarray(sigmas)))
  dist = np.sqrt(np.sum((out[:, None] - points[None])**2, axis=(2, 3)))
  assert np.all(np.min(dist, axis=1) < 1e-4)
  assert len(np.unique(np.argmin(dist, axis=1))) > 1

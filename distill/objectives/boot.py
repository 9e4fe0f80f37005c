"""BOOT (Gu et al. 2023; spec reflow_trajectory_family.md §3): data-free distillation by bootstrapping the signal of
the teacher's trajectories. EDM coordinates (x = x0 + sigma n).

The teacher's probability-flow trajectory from noise eps starts at x = sigma_max eps; its signal at level sigma is
y_sigma = x_sigma - sigma eps (the VP signal (x_t - sigma_t eps) / alpha_t), and the sample is y_0. One DDIM step of
the teacher D from sigma to s < sigma in signal space is exact algebra:
  y_s = f + (s / sigma) (y_sigma - f),  f = D(y_sigma + sigma eps; sigma),
i.e. y_s = y_sigma + delta (f - y_sigma) with delta = 1 - s / sigma (BOOT's 1 - exp(lambda_s - lambda_t) with lambda
= log sigma). The student g(eps, level) (the `signal` parameterisation) sees only the noise and the level. Per sample
eps ~ N(0, I) and an adjacent pair (sigma_i > sigma_{i+1}) of the grid sigma_max = sigma_0 > ... > sigma_{N-1} =
sigma_min > sigma_N = 0 (the Karras rho-grid plus 0), i uniform:
  L_BS = |g(eps, sigma_{i+1}) - sg[y + delta (D(y + sigma_i eps; sigma_i) - y)]|^2 / delta^2,  y = sg g(eps, sigma_i);
  L_B  = |g(eps, sigma_max) - D(sigma_max eps; sigma_max)|^2 (the trajectory's first x-prediction);
loss = mean over elements of L_BS + boundary_weight L_B. No data: the batch only sets its size (and the labels of a
class-conditional teacher). Sampling is one network evaluation, y_0 = g(eps, 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from distill import diffusion
from distill.objectives.base import StatelessObjective
from samplers.grids import edm_sigmas


def signal(network, params, eps, level, cond=None, *, train=False, rng=None):
  """g(eps, level) of a `signal`-parameterised network: eps (B, ...), level () or (B,)."""
  x_in, c_noise = network.parameterization.signal_inputs(eps, level)
  raw = network.raw(params, x_in, c_noise, cond, train=train, rng=rng)
  return network.parameterization.denoised(None, None, raw.astype(eps.dtype))


def bootstrap_target(teacher_denoise, y, eps, sigma, sigma_next):
  """The signal at sigma_next one teacher DDIM step after signal y at sigma on the trajectory of noise eps, and delta
  = 1 - sigma_next / sigma: (y + delta (D(y + sigma eps; sigma) - y), delta)."""
  f = teacher_denoise(y + diffusion.expand(sigma, eps) * eps, sigma)
  delta = diffusion.expand(1.0 - sigma_next / sigma, y)
  return y + delta * (f - y), delta


@dataclasses.dataclass(frozen=True)
class Boot(StatelessObjective):
  groups: dict
  teacher_network: object
  levels: int = 32  # N, the grid's positive levels
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  boundary_weight: float = 1.0
  sample_group: str = "model"

  def __post_init__(self):
    if self.levels < 1:
      raise ValueError(f"objective.levels must be >= 1, got {self.levels}")

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    network = self.groups[group].network
    shape = batch["x"].shape
    cond = batch.get("label") if dict(network.model_kwargs).get("num_classes", 0) else None
    k_eps, k_index, k_drop = jax.random.split(rng, 3)
    eps = jax.random.normal(k_eps, shape)
    grid = jnp.asarray(edm_sigmas(self.levels, self.sigma_min, self.sigma_max, self.rho))
    i = jax.random.randint(k_index, shape[:1], 0, self.levels)
    sigma, sigma_next = grid[i], grid[i + 1]
    teacher_denoise = lambda x, s: self.teacher_network.denoise(teacher_params, x, s, cond)
    g = lambda level: signal(network, params[group], eps, level, cond, train=True, rng=k_drop)
    y = jax.lax.stop_gradient(g(sigma))
    target, delta = jax.lax.stop_gradient(bootstrap_target(teacher_denoise, y, eps, sigma, sigma_next))
    bootstrap = jnp.mean(((g(sigma_next) - target) / delta) ** 2)
    boundary_target = jax.lax.stop_gradient(teacher_denoise(self.sigma_max * eps, self.sigma_max))
    boundary = jnp.mean((g(self.sigma_max) - boundary_target) ** 2)
    return bootstrap + self.boundary_weight * boundary, {"bootstrap": bootstrap, "boundary": boundary}

"""Teacher training objectives: EDM denoising score matching and flow matching (1-rectified flow)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from distill import diffusion
from distill.objectives.base import ParamGroup, StatelessObjective


def drop_labels(rng, labels, rate: float, null_label: int):
  """Replace each label by the null label with probability `rate` (classifier-free guidance training)."""
  if labels is None or rate == 0.0:
    return labels
  return jnp.where(jax.random.uniform(rng, labels.shape) < rate, null_label, labels)


def _conditioning(group: ParamGroup, batch, rng, rate):
  num_classes = dict(group.network.model_kwargs).get("num_classes", 0)
  if not num_classes:
    return None
  return drop_labels(rng, batch["label"], rate, num_classes)


@dataclasses.dataclass(frozen=True)
class EDMDenoising(StatelessObjective):
  """EDM loss: ln sigma ~ N(p_mean, p_std^2), E[lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2], mean over dims."""

  groups: dict
  p_mean: float = -1.2
  p_std: float = 1.2
  sigma_data: float = 0.5
  label_dropout: float = 0.0
  sample_group: str = "model"

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, teacher_params, step
    x0 = batch["x"]
    k_sigma, k_noise, k_label, k_drop = jax.random.split(rng, 4)
    sigma = diffusion.sample_lognormal_sigma(k_sigma, x0.shape[:1], self.p_mean, self.p_std)
    x = x0 + diffusion.expand(sigma, x0) * jax.random.normal(k_noise, x0.shape)
    cond = _conditioning(self.groups[group], batch, k_label, self.label_dropout)
    denoised = self.groups[group].network.denoise(params[group], x, sigma, cond, train=True, rng=k_drop)
    weight = diffusion.edm_loss_weight(sigma, self.sigma_data)
    per_example = jnp.mean((denoised - x0) ** 2, axis=tuple(range(1, x0.ndim)))
    return jnp.mean(weight * per_example), {}


@dataclasses.dataclass(frozen=True)
class FlowMatching(StatelessObjective):
  """1-rectified flow: x_t = t x1 + (1 - t) z with fresh independent z, t ~ U[eps, 1], loss |v(x_t, t) - (x1 - z)|^2."""

  groups: dict
  t_eps: float = 1e-3
  label_dropout: float = 0.0
  sample_group: str = "model"

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, teacher_params, step
    x1 = batch["x"]
    k_t, k_noise, k_label, k_drop = jax.random.split(rng, 4)
    t = jax.random.uniform(k_t, x1.shape[:1], minval=self.t_eps, maxval=1.0)
    z = jax.random.normal(k_noise, x1.shape)
    x_t = diffusion.expand(t, x1) * x1 + (1.0 - diffusion.expand(t, x1)) * z
    cond = _conditioning(self.groups[group], batch, k_label, self.label_dropout)
    v = self.groups[group].network.velocity(params[group], x_t, t, cond, train=True, rng=k_drop)
    return jnp.mean((v - (x1 - z)) ** 2), {}

"""Teacher training objectives: EDM denoising score matching, flow matching (1-rectified flow), and teacher score
matching (a student regressing a frozen teacher on noised data)."""

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
    t, z, x_t, k_label, k_drop = _rf_noised(x1, rng, self.t_eps)
    cond = _conditioning(self.groups[group], batch, k_label, self.label_dropout)
    v = self.groups[group].network.velocity(params[group], x_t, t, cond, train=True, rng=k_drop)
    return jnp.mean((v - (x1 - z)) ** 2), {}


def _rf_noised(x1, rng, t_eps: float):
  """(t ~ U[t_eps, 1] (B,), z ~ N(0, I), x_t = t x1 + (1 - t) z, a label key, a dropout key)."""
  k_t, k_noise, k_label, k_drop = jax.random.split(rng, 4)
  t = jax.random.uniform(k_t, x1.shape[:1], minval=t_eps, maxval=1.0)
  z = jax.random.normal(k_noise, x1.shape)
  return t, z, diffusion.expand(t, x1) * x1 + (1.0 - diffusion.expand(t, x1)) * z, k_label, k_drop


@dataclasses.dataclass(frozen=True)
class TeacherScoreMatching(StatelessObjective):
  """MSD's teacher score matching (TSM, spec adversarial_multistudent.md section 6.2), the stage that lets a student
  smaller than the teacher start a one-step objective close to it: on data noised as in flow matching, x_t = t x1 +
  (1 - t) z, t ~ U[eps, 1], the student regresses the frozen teacher's velocity, |v_student(x_t, t, c) -
  v_teacher(x_t, t, c)|^2 (the flow-matching loss with the teacher's prediction as the target)."""

  groups: dict
  teacher_network: object
  t_eps: float = 1e-3
  sample_group: str = "model"

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    x1 = batch["x"]
    t, _, x_t, _, k_drop = _rf_noised(x1, rng, self.t_eps)
    cond = batch["label"] if dict(self.groups[group].network.model_kwargs).get("num_classes", 0) else None
    target = jax.lax.stop_gradient(self.teacher_network.velocity(teacher_params, x_t, t, cond))
    v = self.groups[group].network.velocity(params[group], x_t, t, cond, train=True, rng=k_drop)
    return jnp.mean((v - target) ** 2), {}

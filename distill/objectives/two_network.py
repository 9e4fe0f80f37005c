"""A two-network objective that exercises parameter groups with their own optimizers and update ratios.

Group 'a' learns the data by flow matching (or, when a teacher is given, regresses the teacher's velocity);
group 'b' regresses a's velocity (a's parameters under stop_gradient) and is updated every `b_every` steps.
This is the shape of generator / fake-score / discriminator objectives, at the smallest scale.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from distill import diffusion
from distill.objectives.base import StatelessObjective


@dataclasses.dataclass(frozen=True)
class TwoNetworkDemo(StatelessObjective):
  groups: dict
  teacher_network: object = None
  t_eps: float = 1e-3
  sample_group: str = "a"

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    x1 = batch["x"]
    k_t, k_noise = jax.random.split(rng)
    t = jax.random.uniform(k_t, x1.shape[:1], minval=self.t_eps, maxval=1.0 - self.t_eps)
    z = jax.random.normal(k_noise, x1.shape)
    x_t = diffusion.expand(t, x1) * x1 + (1.0 - diffusion.expand(t, x1)) * z
    v_a = self.groups["a"].network.velocity(params["a"], x_t, t)
    if group == "a":
      if self.teacher_network is None:
        target = x1 - z
      else:
        target = jax.lax.stop_gradient(self.teacher_network.velocity(teacher_params, x_t, t))
      return jnp.mean((v_a - target) ** 2), {}
    v_b = self.groups["b"].network.velocity(params["b"], x_t, t)
    return jnp.mean((v_b - jax.lax.stop_gradient(v_a)) ** 2), {}

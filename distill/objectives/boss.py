"""BOSS phase 2 (spec §4.2): straighten a pretrained flow on the segments of its Bellman path.

RF coordinates (t = 0 noise, t = 1 data). Each batch draws fresh noise z, runs the frozen teacher's Euler
trajectory over the fine grid (as the reference trajectories of phase 1), keeps its states at the path's nodes
tau_0 < ... < tau_K, picks one segment k per sample and regresses
  v_theta(x_{tau_k}, tau_k)  onto  (x_{tau_{k+1}} - x_{tau_k}) / (tau_{k+1} - tau_k)   (L2, mean over elements),
so that one Euler step per segment reproduces the fine trajectory. Fresh trajectories every batch replace the
paper's fixed set of 5000 (the same distribution without storing it). Sample with Euler on the same grid.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from distill import diffusion
from distill.objectives.base import StatelessObjective


@dataclasses.dataclass(frozen=True)
class BOSSStraighten(StatelessObjective):
  groups: dict
  teacher_network: object
  t_fine: tuple  # fine RF-time grid (increasing)
  nodes: tuple  # Bellman path: indices into t_fine from 0 to len(t_fine) - 1
  sample_group: str = "model"

  def node_states(self, teacher_params, z, cond):
    """(K + 1, B, ...) teacher Euler states at the path's nodes, starting from x = z at t_fine[0]."""
    t = jnp.asarray(self.t_fine, z.dtype)
    keep = np.zeros(len(self.t_fine), bool)
    keep[list(self.nodes)] = True

    def step(x, i):
      v = self.teacher_network.velocity(teacher_params, x, jnp.full(x.shape[:1], t[i]), cond)
      return x + (t[i + 1] - t[i]) * v, x

    x_last, xs = jax.lax.scan(step, z, jnp.arange(len(self.t_fine) - 1))
    states = jnp.concatenate([xs, x_last[None]])
    return jax.lax.stop_gradient(states[np.flatnonzero(keep)])

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    network = self.groups[group].network
    x1 = batch["x"]
    cond = batch.get("label") if dict(network.model_kwargs).get("num_classes", 0) else None
    k_noise, k_segment = jax.random.split(rng)
    z = (1.0 - self.t_fine[0]) * jax.random.normal(k_noise, x1.shape)  # the sampler's start x_rf at t_eps
    states = self.node_states(teacher_params, z, cond)
    taus = jnp.asarray(np.asarray(self.t_fine)[list(self.nodes)], z.dtype)
    k = jax.random.randint(k_segment, x1.shape[:1], 0, len(self.nodes) - 1)
    rows = jnp.arange(x1.shape[0])
    x_a, x_b = states[k, rows], states[k + 1, rows]
    t_a, t_b = taus[k], taus[k + 1]
    target = (x_b - x_a) / diffusion.expand(t_b - t_a, x_a)
    v = network.velocity(params[group], x_a, t_a, cond, train=True)
    return jnp.mean((v - target) ** 2), {}

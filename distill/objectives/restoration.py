"""OFTSR (Zhu et al. 2024; spec reflow_trajectory_family.md §5, checked against the official distill_fm.py): a
noise-augmented conditional rectified-flow teacher for restoration and its one-step student with a fidelity-realism
knob. RF time: the source x0 (distill/restoration.py) at t = 0, the clean sample at t = 1; every network is
velocity-parameterised and conditioned on the lifted measurement y~ (model.source_conditional).

Teacher (`restoration_flow`): x_t = t x + (1 - t) x0, t ~ U[0, 1], loss |v(x_t, t | y~) - (x - x0)|^2.

Student (`oftsr`), initialised from the teacher: u(x0, t | y~) evaluated at the *source* with a time t is the average
velocity of the teacher trajectory from x0 over [0, t], so x0 + (1 - eps) u(x0, t) restores in one evaluation, t
sliding from fidelity (t -> 0: the teacher's one-step, MMSE-like estimate) to realism (t -> 1: the ODE endpoint).
Per example, t ~ U[t_min, t_max], s = min(t + t_step, t_max), h = s - t:
  x_t = x0 + t sg(u(x0, t))                        the student's point on the trajectory at t;
  v_T = teacher RK2 velocity over [t, s] from x_t  (v + (v(x_t + r h v, t + r h) - v) / (2 r), r = rk2_r);
  L_distil = |u(x0, s) - sg(u(x0, t) + (h / s) (v_T - u(x0, t)))|^2    ('v_boot': the average velocity over [0, s]
             of the trajectory through x_t, (x_t + h v_T - x0) / s);
  L_boundary = |u(x0, t_min) - sg(v(x0, t_min))|^2;
  L_align = (1 - t)^2 |u(x0, t) - sg(v_T)|^2        (one-step predictions from x0 and from x_t agree);
loss = distil_weight L_distil + boundary_weight L_boundary + align_weight L_align (means over elements).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from distill.diffusion import expand
from distill.objectives.base import StatelessObjective
from distill.restoration import Degradation


def restoration_problem(degradation: Degradation, x, rng):
  """(y~, x0): the lifted measurement of clean x and the flow's source."""
  k_measure, k_source = jax.random.split(rng)
  y_tilde = degradation.observe(x, k_measure)
  return y_tilde, degradation.source(y_tilde, k_source)


def rk2_velocity(velocity, x, t, h, r: float):
  """The generic second-order Runge-Kutta velocity over [t, t + h] from x (r = 0.5 midpoint, 1 Heun):
  v + (v(x + r h v, t + r h) - v) / (2 r) with v = velocity(x, t); t, h of shape (B,)."""
  v = velocity(x, t)
  v2 = velocity(x + r * expand(h, x) * v, t + r * h)
  return v + (v2 - v) / (2.0 * r)


def average_velocity_target(teacher_velocity, x0, u_t, t, s, r: float):
  """(target, v_T): the average velocity over [0, s] of the teacher trajectory through the student's point x_t = x0
  + t u_t, (x_t + h v_T - x0) / s = u_t + (h / s) (v_T - u_t) with h = s - t, and v_T, the teacher's RK2 velocity
  over [t, s] from x_t; t, s of shape (B,)."""
  h = s - t
  x_t = x0 + expand(t, x0) * u_t
  v_teacher = rk2_velocity(teacher_velocity, x_t, t, h, r)
  return u_t + expand(h / s, x0) * (v_teacher - u_t), v_teacher


@dataclasses.dataclass(frozen=True)
class RestorationFlowMatching(StatelessObjective):
  groups: dict
  degradation: Degradation
  sample_group: str = "model"

  def bundle_section(self) -> dict:
    """The exported bundle's 'restoration' section: it integrates the flow (samplers/restoration.py)."""
    return self.degradation.to_dict() | {"sampler": "flow"}

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, teacher_params, step
    network = self.groups[group].network
    x = batch["x"]
    k_problem, k_t, k_drop = jax.random.split(rng, 3)
    y_tilde, x0 = restoration_problem(self.degradation, x, k_problem)
    t = jax.random.uniform(k_t, x.shape[:1])
    x_t = expand(t, x) * x + (1.0 - expand(t, x)) * x0
    v = network.velocity(params[group], x_t, t, y_tilde, train=True, rng=k_drop)
    loss = jnp.mean((v - (x - x0)) ** 2)
    return loss, {"flow_matching": loss}


@dataclasses.dataclass(frozen=True)
class OFTSR(StatelessObjective):
  groups: dict
  teacher_network: object
  degradation: Degradation
  t_min: float = 0.01
  t_max: float = 0.99
  t_step: float = 0.05
  rk2_r: float = 0.5
  distil_weight: float = 1.0
  boundary_weight: float = 0.1
  align_weight: float = 0.01
  sample_group: str = "model"

  def __post_init__(self):
    if not 0.0 < self.t_min < self.t_max < 1.0 or self.t_step <= 0 or self.rk2_r <= 0:
      raise ValueError(f"OFTSR needs 0 < t_min < t_max < 1, t_step > 0 and rk2_r > 0; got t_min={self.t_min}, "
                       f"t_max={self.t_max}, t_step={self.t_step}, rk2_r={self.rk2_r}")

  def bundle_section(self) -> dict:
    """The exported bundle's 'restoration' section: one step at a time knob (samplers/restoration.py)."""
    return self.degradation.to_dict() | {"sampler": "one_step"}

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    network = self.groups[group].network
    x = batch["x"]
    k_problem, k_t, k_drop = jax.random.split(rng, 3)
    y_tilde, x0 = restoration_problem(self.degradation, x, k_problem)
    t = self.t_min + (self.t_max - self.t_min) * jax.random.uniform(k_t, x.shape[:1])
    s = jnp.minimum(t + self.t_step, self.t_max)
    student = lambda time, i: network.velocity(params[group], x0, time, y_tilde, train=True,
                                               rng=jax.random.fold_in(k_drop, i))
    teacher = lambda xx, time: self.teacher_network.velocity(teacher_params, xx, time, y_tilde)
    u_t, u_s = student(t, 0), student(s, 1)
    target, v_teacher = jax.lax.stop_gradient(
        average_velocity_target(teacher, x0, jax.lax.stop_gradient(u_t), t, s, self.rk2_r))
    distil = jnp.mean((u_s - target) ** 2)
    t_min = jnp.full_like(t, self.t_min)
    boundary = jnp.mean((student(t_min, 2) - jax.lax.stop_gradient(teacher(x0, t_min))) ** 2)
    align = jnp.mean(expand((1.0 - t) ** 2, x0) * (u_t - v_teacher) ** 2)
    total = self.distil_weight * distil + self.boundary_weight * boundary + self.align_weight * align
    return total, {"distil": distil, "boundary": boundary, "align": align}

"""Progressive distillation (Salimans & Ho 2022; spec reflow_trajectory_family.md §7.1), one N -> N/2 round.

EDM coordinates (x = x0 + sigma n); a DDIM step from sigma to s with denoiser D is x_s = D + (s / sigma) (x - D), the
same map as DDIM on the VP path and Euler on the rectified-flow path. The student grid has N = `student_steps`
intervals, the teacher's 2N, on the rectified-flow grid t_i = t_eps + i (1 - t_eps) / M (sigma = (1 - t) / t, ending
at 0) so that every student level is a teacher level. Per sample a student interval i ~ U{0..N-1} and real data x0:
  z = x0 + sigma_i eps;  two teacher DDIM steps sigma_i -> sigma_mid -> sigma_{i+1} give z'';
  target x~ = (z'' - r z) / (1 - r) with r = sigma_{i+1} / sigma_i, the denoised value whose single DDIM step from z
  lands on z'' (at the last interval r = 0 and x~ = z'');
  loss = max(SNR, 1) |D_theta(z; sigma_i) - x~|^2 with SNR = 1 / sigma_i^2 (the truncated-SNR weighting), mean over
  elements.
Rounds are pipeline stages: each starts from the previous round's student, which is also its teacher. The exported
student samples with Euler (= DDIM) on its N-step grid.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from distill import diffusion
from distill.objectives.base import StatelessObjective
from samplers.grids import uniform_t_sigmas


def ddim_step(denoised, x, sigma, sigma_next):
  """x at sigma_next from x at sigma given D(x; sigma): D + (sigma_next / sigma) (x - D)."""
  ratio = diffusion.expand(sigma_next / sigma, x)
  return denoised + ratio * (x - denoised)


def ddim_target(z, z_next, sigma, sigma_next):
  """The denoised value x~ whose DDIM step from z at sigma reaches z_next at sigma_next: (z_next - r z) / (1 - r)."""
  ratio = diffusion.expand(sigma_next / sigma, z)
  return (z_next - ratio * z) / (1.0 - ratio)


@dataclasses.dataclass(frozen=True)
class ProgressiveDistillation(StatelessObjective):
  groups: dict
  teacher_network: object
  student_steps: int
  t_eps: float = 1e-3
  sample_group: str = "model"

  def __post_init__(self):
    if self.student_steps < 1:
      raise ValueError(f"objective.student_steps must be >= 1, got {self.student_steps}")

  def grids(self) -> tuple[np.ndarray, np.ndarray]:
    """(student grid (N + 1,), teacher grid (2N + 1,)), decreasing sigma ending at 0."""
    return (uniform_t_sigmas(self.student_steps, self.t_eps), uniform_t_sigmas(2 * self.student_steps, self.t_eps))

  def teacher_two_steps(self, teacher_params, z, sigma, sigma_mid, sigma_next, cond):
    """The teacher's two DDIM steps sigma -> sigma_mid -> sigma_next from z."""
    denoise = lambda x, s: self.teacher_network.denoise(teacher_params, x, s, cond)
    z_mid = ddim_step(denoise(z, sigma), z, sigma, sigma_mid)
    return ddim_step(denoise(z_mid, sigma_mid), z_mid, sigma_mid, sigma_next)

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    network = self.groups[group].network
    x0 = batch["x"]
    cond = batch.get("label") if dict(network.model_kwargs).get("num_classes", 0) else None
    k_index, k_noise, k_drop = jax.random.split(rng, 3)
    student_grid, teacher_grid = (jnp.asarray(g) for g in self.grids())
    i = jax.random.randint(k_index, x0.shape[:1], 0, self.student_steps)
    sigma, sigma_mid, sigma_next = student_grid[i], teacher_grid[2 * i + 1], student_grid[i + 1]
    z = x0 + diffusion.expand(sigma, x0) * jax.random.normal(k_noise, x0.shape)
    z_next = self.teacher_two_steps(teacher_params, z, sigma, sigma_mid, sigma_next, cond)
    target = jax.lax.stop_gradient(ddim_target(z, z_next, sigma, sigma_next))
    pred = network.denoise(params[group], z, sigma, cond, train=True, rng=k_drop)
    weight = jnp.maximum(1.0 / sigma**2, 1.0)
    per_sample = jnp.mean((pred - target) ** 2, axis=tuple(range(1, x0.ndim)))
    return jnp.mean(weight * per_sample), {}

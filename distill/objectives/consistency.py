"""Consistency distillation and consistency training (Song et al. 2023) with iCT's improvements (Song & Dhariwal
2024); spec reflow_trajectory_family.md §7.2-7.3. EDM coordinates: x = x0 + sigma n, data at sigma = 0.

The student f_theta is a network with the `consistency` parameterisation (f(x; sigma_min) = x exactly). Discretisation
with N points, index 0 the noisiest: sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) -
sigma_max^(1/rho)))^rho. Per sample an index n in [0, N - 2] and the adjacent pair (sigma_n > sigma_{n+1}):
- distillation (a teacher is configured): x_n = x + sigma_n z, x_{n+1} = one teacher Heun (or Euler) step of the
  probability-flow ODE from sigma_n to sigma_{n+1};
- training (no teacher): the same noise at both levels, x_n = x + sigma_n z and x_{n+1} = x + sigma_{n+1} z.
Loss: lambda(sigma_n) d(f_theta(x_n; sigma_n), sg f_target(x_{n+1}; sigma_{n+1})), both branches with the same
dropout key. The target network is the student itself under stop-gradient when the target rate mu is 0 (iCT and the
JAX CIFAR-10 code), else an EMA of the student at rate mu(k) kept in the objective's state.

Curricula over the training step k of K = curriculum_steps:
- 'fixed': N = scales, mu = mu0;
- 'ct' (Song 2023): N(k) = max(ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1), 1) + 1, mu(k) = exp(s0 ln mu0 /
  (N(k) - 1)) (the official code's ct_ema_scales_schedules; the paper writes N(k) in mu);
- 'ict': N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2 floor(s1 / s0) + 1)), mu = 0.
Index sampling 'uniform' (n ~ U{0..N-2}) or 'lognormal' (iCT: p(n) proportional to erf((ln sigma_n - P_mean) /
(sqrt 2 P_std)) - erf((ln sigma_{n+1} - P_mean) / (sqrt 2 P_std))); weighting 'uniform' (lambda = 1) or 'ict'
(lambda = 1 / (sigma_n - sigma_{n+1})); distances of objectives/reflow.py (l2, pseudo_huber, lpips). One-step
sampling: f(sigma_max z; sigma_max); multistep alternates f and re-noising to the next level as x0 + sigma n
(samplers/student.py; CM re-noises by sqrt(sigma^2 - sigma_min^2), 2e-5 relative at the levels used, sigma >= 0.3).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.scipy.special

from distill import diffusion
from distill.objectives import reflow

CURRICULA = ("fixed", "ct", "ict")
INDEX_SAMPLING = ("uniform", "lognormal")
WEIGHTINGS = ("uniform", "ict")
TEACHER_SOLVERS = ("heun", "euler")


def karras_level(i, num_scales, sigma_min: float, sigma_max: float, rho: float):
  """sigma_i of the N-point Karras grid (index 0 = sigma_max, N - 1 = sigma_min); i and N may be traced arrays."""
  hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
  frac = jnp.asarray(i, jnp.float32) / (jnp.asarray(num_scales, jnp.float32) - 1.0)
  return (hi + frac * (lo - hi)) ** rho


def num_scales(curriculum: str, step, total_steps: int, s0: int, s1: int, scales: int):
  """N(k) of the curriculum (int32; `step` may be traced)."""
  k = jnp.asarray(step, jnp.float32)
  if curriculum == "fixed":
    return jnp.asarray(scales, jnp.int32)
  if curriculum == "ct":
    intervals = jnp.ceil(jnp.sqrt(jnp.minimum(k / total_steps, 1.0) * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1.0)
    return (jnp.maximum(intervals, 1.0) + 1.0).astype(jnp.int32)
  if curriculum == "ict":
    stage_steps = max(1, math.floor(total_steps / (math.log2(s1 // s0) + 1)))
    doubling = jnp.floor(k / stage_steps)
    return (jnp.minimum(s0 * 2.0**doubling, s1) + 1.0).astype(jnp.int32)
  raise ValueError(f"unknown consistency curriculum {curriculum!r}; choose one of {', '.join(CURRICULA)}")


def max_scales(curriculum: str, s1: int, scales: int) -> int:
  """The largest N the curriculum reaches (the static size of the index distribution)."""
  return scales if curriculum == "fixed" else s1 + 1


def target_rate(curriculum: str, n_scales, s0: int, mu0: float):
  """mu(k): the EMA rate of the target network (0: the student itself under stop-gradient)."""
  if curriculum == "ct" and mu0 > 0:
    return jnp.exp(s0 * math.log(mu0) / (n_scales.astype(jnp.float32) - 1.0))
  return jnp.asarray(0.0 if curriculum == "ict" else mu0, jnp.float32)


def index_logits(sampling: str, n_scales, size: int, sigma_min, sigma_max, rho, p_mean, p_std):
  """(size - 1,) log-probabilities of the pair index n (valid for n <= N - 2, -inf beyond)."""
  n = jnp.arange(size - 1)
  valid = n <= n_scales - 2
  if sampling == "uniform":
    return jnp.where(valid, 0.0, -jnp.inf)
  if sampling != "lognormal":
    raise ValueError(f"unknown index sampling {sampling!r}; choose one of {', '.join(INDEX_SAMPLING)}")
  cdf = lambda s: jax.scipy.special.erf((jnp.log(s) - p_mean) / (math.sqrt(2.0) * p_std))
  mass = cdf(karras_level(n, n_scales, sigma_min, sigma_max, rho)) - cdf(
      karras_level(n + 1, n_scales, sigma_min, sigma_max, rho))
  return jnp.where(valid, jnp.log(jnp.maximum(mass, 1e-30)), -jnp.inf)


@dataclasses.dataclass(frozen=True)
class Consistency:
  groups: dict
  teacher_network: object = None  # None: consistency training
  curriculum: str = "ict"
  scales: int = 18  # N of the 'fixed' curriculum
  s0: int = 10
  s1: int = 1280
  curriculum_steps: int = 1  # K, the curriculum's length (usually the stage's num_steps)
  mu0: float = 0.0
  index_sampling: str = "lognormal"
  p_mean: float = -1.1
  p_std: float = 2.0
  weighting: str = "ict"
  distance: str = "pseudo_huber"
  huber_c: float = 0.00054
  teacher_solver: str = "heun"
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  lpips: object = dataclasses.field(default=None, compare=False, repr=False)
  sample_group: str = "model"

  def __post_init__(self):
    for value, valid, what in ((self.curriculum, CURRICULA, "curriculum"),
                               (self.index_sampling, INDEX_SAMPLING, "index_sampling"),
                               (self.weighting, WEIGHTINGS, "weighting"),
                               (self.teacher_solver, TEACHER_SOLVERS, "teacher_solver")):
      if value not in valid:
        raise ValueError(f"objective.{what} must be one of {', '.join(valid)}, got {value!r}")
    reflow.check_distance(self.distance, self.lpips)
    if max_scales(self.curriculum, self.s1, self.scales) < 2:
      raise ValueError("a consistency discretisation needs at least 2 points (objective.scales / s1)")
    if self.curriculum == "ict" and self.mu0 != 0:
      raise ValueError("iCT has no EMA target (mu = 0): set objective.mu0=0 or another curriculum")

  @property
  def uses_target_network(self) -> bool:
    return self.mu0 > 0

  def init_aux(self, params, teacher_params, rng):
    del teacher_params, rng
    return {"target": params[self.sample_group]} if self.uses_target_network else {}

  def post_update(self, params, aux, step):
    if not self.uses_target_network:
      return aux
    mu = target_rate(self.curriculum, self._num_scales(step), self.s0, self.mu0)
    return {"target": jax.tree.map(lambda t, p: mu * t + (1.0 - mu) * p, aux["target"], params[self.sample_group])}

  def _num_scales(self, step):
    return num_scales(self.curriculum, step, self.curriculum_steps, self.s0, self.s1, self.scales)

  def teacher_step(self, teacher_params, x, sigma, sigma_next, cond):
    """One step of the teacher's probability-flow ODE from sigma to sigma_next (both > 0), Heun or Euler."""
    def slope(y, s):
      return diffusion.ode_derivative(y, s, self.teacher_network.denoise(teacher_params, y, s, cond))

    h = diffusion.expand(sigma_next - sigma, x)
    d = slope(x, sigma)
    x_euler = x + h * d
    if self.teacher_solver == "euler":
      return x_euler
    return x + h * 0.5 * (d + slope(x_euler, sigma_next))

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    network = self.groups[group].network
    x0 = batch["x"]
    cond = batch.get("label") if dict(network.model_kwargs).get("num_classes", 0) else None
    k_index, k_noise, k_drop = jax.random.split(rng, 3)
    n_scales = self._num_scales(step)
    size = max_scales(self.curriculum, self.s1, self.scales)
    logits = index_logits(self.index_sampling, n_scales, size, self.sigma_min, self.sigma_max, self.rho, self.p_mean,
                          self.p_std)
    n = jax.random.categorical(k_index, logits, shape=x0.shape[:1])
    sigma = karras_level(n, n_scales, self.sigma_min, self.sigma_max, self.rho)
    sigma_next = karras_level(n + 1, n_scales, self.sigma_min, self.sigma_max, self.rho)
    z = jax.random.normal(k_noise, x0.shape)
    x = x0 + diffusion.expand(sigma, x0) * z
    if self.teacher_network is None:
      x_next = x0 + diffusion.expand(sigma_next, x0) * z
    else:
      x_next = jax.lax.stop_gradient(self.teacher_step(teacher_params, x, sigma, sigma_next, cond))
    target_params = aux["target"] if self.uses_target_network else params[group]
    target = jax.lax.stop_gradient(network.denoise(target_params, x_next, sigma_next, cond, train=True, rng=k_drop))
    pred = network.denoise(params[group], x, sigma, cond, train=True, rng=k_drop)
    weight = 1.0 / (sigma - sigma_next) if self.weighting == "ict" else jnp.ones_like(sigma)
    per_sample = reflow.distance(pred, target, self.distance, self.huber_c, self.lpips)
    return jnp.mean(weight * per_sample), {"num_scales": n_scales.astype(jnp.float32),
                                           "target_rate": target_rate(self.curriculum, n_scales, self.s0, self.mu0)}

"""Rectified-flow reflow family (RF coordinates: x_t = t x1 + (1 - t) z, t = 0 noise, t = 1 data).

- `Reflow`: k-rectified flow and k-step / one-step distillation on teacher pairs (z, x1) (Liu et al. 2022):
  loss D(v(x_t, t), x1 - z) with t ~ U[eps, 1] ('uniform', reflow), t = eps ('t0', one-step distillation) or
  t uniform on the k-step grid {eps + i (1 - eps) / k} ('k'). With an annealing schedule for beta (SlimFlow's
  annealing reflow) the noise is mixed as z_beta = sqrt(1 - beta^2) z + beta xi with fresh xi ~ N(0, I) and the
  target is x1 - z_beta. With `online` the pairs are made per batch by the teacher's ODE (Euler by default).
- `FlowGuidedDistillation`: SlimFlow's one-step loss on pairs plus the 2-step guide loss on fresh noise, guided by
  a frozen 2-rectified flow (the configured teacher).
Distances D per sample: 'l2' (mean over elements of the squared error), 'pseudo_huber'
(sqrt(|a - b|^2 + c^2) - c with c = huber_c * sqrt(dim), iCT's choice of scaling), 'lpips' (LPIPS(VGG) from
user-supplied weights, distill/lpips_weights.py) or 'lpips+l2' (their per-sample sum). LPIPS compares images, so
Reflow with an LPIPS distance needs time='t0' and compares the one-step prediction x_t + (1 - t) v with x1 (the RF
repository's one-step LPIPS distillation); FlowGuidedDistillation always compares images. The one-step student map is
the 1-step Euler sampler on the uniform-t grid: x1_hat = x_eps + (1 - eps) v(x_eps, eps) with x_eps = (1 - eps) z.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

import samplers
from distill import diffusion
from distill.objectives.base import StatelessObjective
from distill.objectives.teacher_training import drop_labels

BETA_SCHEDULES = ("none", "linear", "cosine", "exp", "constant")
TIME_SCHEDULES = ("uniform", "t0", "k")
DISTANCES = ("l2", "pseudo_huber", "lpips", "lpips+l2")
IMAGE_DISTANCES = ("lpips", "lpips+l2")


def annealing_beta(schedule: str, step, steps: int, value: float = 0.0):
  """SlimFlow's noise-mixing coefficient at training `step`: linear 1 - min(1, k/K), cosine
  (1 + cos(pi min(1, k/K))) / 2, exp exp(-k/K), constant `value`, none 0. All decrease from 1 to 0 over K steps."""
  frac = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / max(steps, 1))
  if schedule == "none":
    return jnp.zeros(())
  if schedule == "linear":
    return 1.0 - frac
  if schedule == "cosine":
    return 0.5 * (1.0 + jnp.cos(math.pi * frac))
  if schedule == "exp":
    return jnp.exp(-jnp.asarray(step, jnp.float32) / max(steps, 1))
  if schedule == "constant":
    return jnp.full((), value, jnp.float32)
  raise ValueError(f"unknown beta schedule {schedule!r}; choose one of {', '.join(BETA_SCHEDULES)}")


def check_distance(kind: str, lpips) -> None:
  if kind not in DISTANCES:
    raise ValueError(f"unknown distance {kind!r}; choose one of {', '.join(DISTANCES)}")
  if kind in IMAGE_DISTANCES and lpips is None:
    raise ValueError(f"distance {kind!r} needs LPIPS weights (objective.lpips_weights)")


def distance(a, b, kind: str, huber_c: float = 0.00054, lpips=None):
  """Per-sample distance between two (B, ...) arrays (see the module docstring); `lpips` maps two (B, H, W, C)
  image batches to (B,) and is needed by the LPIPS kinds only."""
  axes = tuple(range(1, a.ndim))
  if kind == "l2":
    return jnp.mean((a - b) ** 2, axis=axes)
  if kind == "pseudo_huber":
    c = huber_c * math.sqrt(math.prod(a.shape[1:]))
    return jnp.sqrt(jnp.sum((a - b) ** 2, axis=axes) + c**2) - c
  check_distance(kind, lpips)
  d = lpips(a, b)
  return d + jnp.mean((a - b) ** 2, axis=axes) if kind == "lpips+l2" else d


def sample_time(rng, schedule: str, n: int, t_eps: float, k: int = 1):
  """Training times (n,) in RF time for a time schedule (see the module docstring)."""
  if schedule == "uniform":
    return jax.random.uniform(rng, (n,), minval=t_eps, maxval=1.0)
  if schedule == "t0":
    return jnp.full((n,), t_eps)
  if schedule == "k":
    return t_eps + jax.random.randint(rng, (n,), 0, k) * (1.0 - t_eps) / k
  raise ValueError(f"unknown time schedule {schedule!r}; choose one of {', '.join(TIME_SCHEDULES)}")


def mix(a, b, t):
  """t a + (1 - t) b with per-sample t (B,)."""
  t = diffusion.expand(t, a)
  return t * a + (1.0 - t) * b


def _cond(network, batch, rng, rate):
  if not dict(network.model_kwargs).get("num_classes", 0):
    return None
  return drop_labels(rng, batch["label"], rate, dict(network.model_kwargs)["num_classes"])


@dataclasses.dataclass(frozen=True)
class Reflow(StatelessObjective):
  """Reflow / k-step distillation / annealing reflow of one velocity model on teacher pairs."""

  groups: dict
  teacher_network: object = None  # needed only for online pairs
  time: str = "uniform"
  k: int = 1
  distance: str = "l2"
  huber_c: float = 0.00054
  t_eps: float = 1e-3
  beta_schedule: str = "none"
  beta_steps: int = 1
  beta_value: float = 0.0
  online: bool = False
  online_steps: int = 20
  label_dropout: float = 0.0
  lpips: object = None  # distill.lpips_weights.LPIPSDistance for the LPIPS distances
  sample_group: str = "model"

  def __post_init__(self):
    sample_time(jax.random.key(0), self.time, 1, self.t_eps, self.k)  # validates the names early
    annealing_beta(self.beta_schedule, 0, self.beta_steps, self.beta_value)
    check_distance(self.distance, self.lpips)
    if self.distance in IMAGE_DISTANCES and self.time != "t0":
      raise ValueError(f"distance {self.distance!r} compares one-step images and needs time='t0', got "
                       f"{self.time!r}")

  def pairs(self, batch, teacher_params, rng, cond):
    """(z, x1): the stored pair, or (online) fresh noise and the teacher's Euler ODE solution from it."""
    if not self.online:
      return batch["noise"], batch["x"]
    z = jax.random.normal(rng, batch["x"].shape)
    sigmas = samplers.uniform_t_sigmas(self.online_steps, self.t_eps)
    denoise = lambda x, s, c: self.teacher_network.denoise(teacher_params, x, s, c)
    x1 = samplers.euler(denoise, sigmas[0] * z, sigmas, cond)
    return z, jax.lax.stop_gradient(x1.astype(z.dtype))

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux
    network = self.groups[group].network
    k_pair, k_xi, k_t, k_label, k_drop = jax.random.split(rng, 5)
    cond = _cond(network, batch, k_label, self.label_dropout)
    z, x1 = self.pairs(batch, teacher_params, k_pair, None if cond is None else batch["label"])
    beta = annealing_beta(self.beta_schedule, step, self.beta_steps, self.beta_value)
    if self.beta_schedule != "none":
      z = jnp.sqrt(1.0 - beta**2) * z + beta * jax.random.normal(k_xi, z.shape)
    t = sample_time(k_t, self.time, z.shape[0], self.t_eps, self.k)
    x_t = mix(x1, z, t)
    v = network.velocity(params[group], x_t, t, cond, train=True, rng=k_drop)
    if self.distance in IMAGE_DISTANCES:
      x1_hat = x_t + diffusion.expand(1.0 - t, x_t) * v
      loss = jnp.mean(distance(x1_hat, x1, self.distance, lpips=self.lpips))
    else:
      loss = jnp.mean(distance(v, x1 - z, self.distance, self.huber_c))
    return loss, {"beta": beta}

  def student_sample(self, params, batch, rng, step):
    """(the one-step student sample from the pair's noise, labels or None, None); for an adversarial term
    (objectives/adversarial.py), which needs one-step distillation (time 't0')."""
    del rng, step
    network = self.groups["model"].network
    cond = batch.get("label") if dict(network.model_kwargs).get("num_classes", 0) else None
    return one_step(network, params["model"], batch["noise"], self.t_eps, cond)[0], cond, None


def one_step(network, params, z, t_eps: float, cond=None):
  """(x1_hat, u): the one-step student sample from noise z and its velocity u = v(x_eps, eps), x_eps = (1 - eps) z;
  x1_hat = x_eps + (1 - eps) u is exactly the 1-step Euler sampler on the uniform-t grid."""
  x_eps = (1.0 - t_eps) * z
  u = network.velocity(params, x_eps, jnp.full(z.shape[:1], t_eps), cond)
  return x_eps + (1.0 - t_eps) * u, u


@dataclasses.dataclass(frozen=True)
class FlowGuidedDistillation(StatelessObjective):
  """SlimFlow flow-guided distillation: L = D(G(z), x1) on pairs + D(G(e), sg(x~1)) on fresh noise e, where
  x_t' = x_eps + (t' - eps) sg(u) with the student's own direction u (guide_first_leg='student') or the guide's
  v(x_eps, eps) ('guide'), t' ~ U(t_min, t_max), and x~1 = x_t' + (1 - t') v_guide(x_t', t')."""

  groups: dict
  guide_network: object
  distance: str = "l2"
  huber_c: float = 0.00054
  t_eps: float = 1e-3
  t_min: float = 0.2
  t_max: float = 0.8
  guide_first_leg: str = "student"
  guide_weight: float = 1.0
  lpips: object = None  # distill.lpips_weights.LPIPSDistance for the LPIPS distances
  sample_group: str = "model"

  def __post_init__(self):
    if self.guide_first_leg not in ("student", "guide"):
      raise ValueError(f"guide_first_leg must be 'student' or 'guide', got {self.guide_first_leg!r}")
    check_distance(self.distance, self.lpips)

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, step
    network = self.groups[group].network
    cond = batch.get("label") if dict(network.model_kwargs).get("num_classes", 0) else None
    z, x1 = batch["noise"], batch["x"]
    x1_hat, _ = one_step(network, params[group], z, self.t_eps, cond)
    distill = jnp.mean(distance(x1_hat, x1, self.distance, self.huber_c, self.lpips))

    k_noise, k_t = jax.random.split(rng)
    e = jax.random.normal(k_noise, z.shape)
    g_hat, u = one_step(network, params[group], e, self.t_eps, cond)
    x_eps = (1.0 - self.t_eps) * e
    if self.guide_first_leg == "guide":
      u = self.guide_network.velocity(teacher_params, x_eps, jnp.full(z.shape[:1], self.t_eps), cond)
    t = jax.random.uniform(k_t, z.shape[:1], minval=self.t_min, maxval=self.t_max)
    x_t = x_eps + diffusion.expand(t - self.t_eps, e) * jax.lax.stop_gradient(u)
    target = x_t + diffusion.expand(1.0 - t, e) * self.guide_network.velocity(teacher_params, x_t, t, cond)
    guide = jnp.mean(distance(g_hat, jax.lax.stop_gradient(target), self.distance, self.huber_c, self.lpips))
    return distill + self.guide_weight * guide, {"distill": distill, "guide": guide}

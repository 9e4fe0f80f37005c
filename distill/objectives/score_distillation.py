"""Score-based one-step distillation: one objective for Uni-Instruct's f-divergence family, SiD / SiDA, SIM,
Diff-Instruct, DMD / DMD2 and f-distill (spec: shared/specs/divergence_family.md; notation of its section 1).

EDM convention throughout: x_sigma = x0 + sigma * eps, D(x; sigma) ~= E[x0 | x_sigma], teacher D_phi (frozen),
fake score D_psi (trained by denoising score matching on stop-gradient generator samples), one-step generator
G(z) = D_theta(sigma_init z; sigma_init). Networks of any parameterisation work: `Network.denoise` is always the EDM
denoiser. Parameter groups, updated in this order within a step:
- 'fake': L = E lambda(sigma) |D_psi(sg x0 + sigma eps) - sg x0|^2 (sum over elements), lambda = 1/sigma^2 +
  1/sigma_data^2, sigma from `fake_sigma`.
- 'disc' (only when a density ratio or a GAN term is configured): a discriminator with per-sample logit l(x, sigma) =
  mean of its network's raw output (a copy of the teacher's architecture, decoupled from the fake score); BCE with
  real data as 1 and stop-gradient generator samples as 0, both noised with the same sigma and eps. Its optimal
  logit is log p_data,sigma / p_theta,sigma, so r = exp(l) estimates the ratio q / p the f-divergences need.
- 'generator' (every `generator_every` steps): per-sample surrogate l_i by `estimator` (below), masked mean over
  finite samples.
  Delta = D_phi(x_sigma) - D_psi(x_sigma); n = sg(max(mean |x0 - D_phi|, normaliser_eps)) (or 1);
  r = sg(clip(exp(clip(l, +-ratio_logit_clip)), ratio_min, ratio_max)).
  * 'f_divergence' (Uni-Instruct, pathwise through both score nets):
      [Lambda(r) |Delta|^2 + 2 g(r) <Delta, D_psi - x0>] / n with r differentiated through x_sigma
    (ratio_path='pathwise', the default): its gradient equals that of E_p[g(r) |Delta|^2] for exact scores and
    ratio, for every generator parameter. ratio_path='detached' is the spec's decomposition with r under
    stop-gradient plus the DI term c_DI(r) sg(|Delta|^2 / sigma^2) <sg Delta, x0>; it drops a term
    2 r g'(r) <Delta, D_psi - x0> <sg Delta, dx0> whose conditional mean vanishes only for parameters that
    translate x0, so it is exact for the generator's shift but biased for its scale (tests/test_score_distillation.py
    measures both). (Lambda, g, c_DI) are F_WEIGHTS; reverse KL is exactly twice SiD with alpha = 1/2.
    `divergence_alpha` (default 1/2: the exact gradient) carries SiD's alpha to every divergence: Lambda(r) becomes
    Lambda(r) - (2 alpha - 1) g(r), i.e. -(2 alpha - 1) g(r) |Delta|^2 is added, whose gradient vanishes where
    Delta = 0, so the fixed point is unchanged; reverse KL is then twice SiD(alpha), forward KL ratio-weighted
    SiD(alpha). Before
    `divergence_start` the estimator is SiD with alpha = 1.
  * 'sid': [(1 - alpha) |Delta|^2 + <Delta, D_psi - x0>] / n (pathwise).
  * 'sim': SIM with distance 'l2' (2 <Delta, D_psi - x0>, = SiD alpha = 1 doubled) or 'pseudo_huber'
    (<Delta, D_psi - x0> / sqrt(sg |Delta|^2 + c^2), c = sim_c sqrt(dim)), divided by n.
  * 'vsd' (Diff-Instruct, DMD, DMD2, f-distill; detached direction): <sg(h(r) (D_psi - D_phi) / n), x0>, h = g of
    the divergence (1 for reverse KL); its gradient is sigma^2 grad E_p[f(r)] for exact scores and ratio.
  Optional terms: gan_weight * softplus(-l(x)) (non-saturating, pathwise through the frozen discriminator) at
  x = x_sigma of the divergence term (gan_sigma '', SiDA / Uni-Instruct) or at a fresh x0 + sigma' eps' with sigma'
  from gan_sigma (DMD2's 'diffusion GAN'); divided by n too with gan_over_normaliser, as SiDA / Uni-Instruct) once `divergence_start` is
  reached, and regression_weight * D(G(noise), x) on teacher pairs (DMD).
  With `weight_normalise` the ratio weights are divided by the batch mean of g(r) (a positive per-batch scale).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from distill import diffusion
from distill.objectives.base import StatelessObjective, full_set_rows
from distill.objectives.reflow import check_distance, distance

SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
ESTIMATORS = ("f_divergence", "sid", "sim", "vsd")


def _ones(r):
  return jnp.ones_like(r)


# r = q / p (teacher over student); g = r^2 f''(r), Lambda = g - r g'(r), c_DI = -r^2 g''(r) (spec section 2.2).
F_WEIGHTS = {
    "rkl": lambda r: (_ones(r), _ones(r), 0.0 * r),
    "fkl": lambda r: (0.0 * r, r, 0.0 * r),
    "jeffreys": lambda r: (_ones(r), 1.0 + r, 0.0 * r),
    "js": lambda r: (r**2 / (1.0 + r) ** 2, r / (1.0 + r), 2.0 * r**2 / (1.0 + r) ** 3),
    "chi2": lambda r: (-2.0 * r**2, 2.0 * r**2, -4.0 * r**2),
    "hellinger": lambda r: (0.25 * jnp.sqrt(r), 0.5 * jnp.sqrt(r), 0.125 * jnp.sqrt(r)),
    "neyman": lambda r: (4.0 / r, 2.0 / r, -4.0 / r),
    "sf": lambda r: ((1.0 + 2.0 * r) / (1.0 + r) ** 2, 1.0 / (1.0 + r), -2.0 * r**2 / (1.0 + r) ** 3),
}
SIGMA_SAMPLERS = ("lognormal", "karras", "karras_index", "fixed")


def parse_sigma_sampler(spec: str) -> tuple[str, tuple[float, ...]]:
  """'lognormal:m,s' | 'karras:u_max' | 'karras_index:lo,hi[,n]' | 'fixed:sigma' -> (kind, numbers)."""
  kind, _, args = spec.partition(":")
  arity = {"lognormal": (2,), "karras": (1,), "karras_index": (2, 3), "fixed": (1,)}
  try:
    values = tuple(float(a) for a in args.split(",")) if args else ()
  except ValueError:
    values = None
  if kind not in arity or values is None or len(values) not in arity[kind]:
    raise ValueError(f"bad sigma sampler {spec!r}; use lognormal:MEAN,STD, karras:U_MAX, karras_index:LO,HI[,N] "
                     "or fixed:SIGMA")
  return kind, values


def karras_sigma(u):
  """sigma at Karras fraction u in [0, 1] (0: sigma_max, 1: sigma_min), rho = 7."""
  lo, hi = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
  return (hi + u * (lo - hi)) ** RHO


def sample_sigma(spec: str, key, n: int):
  """(n,) noise levels: log-normal; Karras-continuous with u ~ U[0, u_max] measured from sigma_min (u_max = 0.8
  gives sigma in [0.002, 24.4]); an index uniform on {lo..hi} of the ascending N-level Karras grid; or fixed."""
  kind, v = parse_sigma_sampler(spec)
  if kind == "lognormal":
    return jnp.exp(v[0] + v[1] * jax.random.normal(key, (n,)))
  if kind == "karras":
    return karras_sigma(1.0 - v[0] * jax.random.uniform(key, (n,)))
  if kind == "karras_index":
    levels = int(v[2]) if len(v) == 3 else 1000
    index = jax.random.randint(key, (n,), int(v[0]), int(v[1]) + 1)
    return karras_sigma(1.0 - index / (levels - 1))
  return jnp.full((n,), v[0], jnp.float32)


def per_sample_sum(a):
  return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


def masked_mean(values):
  """(mean over finite entries, number of non-finite entries)."""
  finite = jnp.isfinite(values)
  count = jnp.sum(finite)
  return jnp.sum(jnp.where(finite, values, 0.0)) / jnp.maximum(count, 1), values.shape[0] - count


def needs_ratio(estimator: str, divergence: str) -> bool:
  return estimator in ("f_divergence", "vsd") and divergence != "rkl"


@dataclasses.dataclass(frozen=True)
class ScoreDistillation(StatelessObjective):
  """See the module docstring. groups: 'fake', optional 'disc', 'generator' (in this order)."""

  groups: dict
  teacher_network: object
  estimator: str = "f_divergence"
  divergence: str = "rkl"
  alpha: float = 1.2
  divergence_alpha: float = 0.5
  sim_distance: str = "l2"
  sim_c: float = 0.0
  sigma_init: float = 2.5
  sigma_data: float = 0.5
  generator_sigma: str = "karras:0.8"
  fake_sigma: str = "lognormal:-1.2,1.2"
  disc_sigma: str = "lognormal:-1.2,1.2"
  gan_sigma: str = ""
  normaliser: str = "mean_abs"
  normaliser_eps: float = 1e-5
  ratio_path: str = "pathwise"
  ratio_logit_clip: float = 10.0
  ratio_min: float = 0.1
  ratio_max: float = 20.0
  weight_normalise: bool = True
  gan_weight: float = 0.0
  gan_over_normaliser: bool = False
  regression_weight: float = 0.0
  regression_distance: str = "l2"
  lpips: object = None
  generator_start: int = 0
  divergence_start: int = 0
  labels: str = "data"
  guidance: float = 1.0
  sample_group: str = "generator"

  @property
  def warmup_steps(self) -> int:
    """The generator is held until generator_start and follows SiD (alpha = 1, no GAN term) until divergence_start."""
    return max(self.generator_start, self.divergence_start)

  def __post_init__(self):
    if self.estimator not in ESTIMATORS:
      raise ValueError(f"unknown objective.estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if self.divergence not in F_WEIGHTS:
      raise ValueError(f"unknown objective.divergence {self.divergence!r}; choose one of {', '.join(F_WEIGHTS)}")
    if needs_ratio(self.estimator, self.divergence) and "disc" not in self.groups:
      raise ValueError(f"divergence {self.divergence!r} weights samples by the density ratio q/p, estimated by a "
                       "discriminator: set objective.discriminator=True")
    if self.gan_weight > 0 and "disc" not in self.groups:
      raise ValueError("objective.gan_weight > 0 needs the discriminator: set objective.discriminator=True")
    if self.sim_distance not in ("l2", "pseudo_huber"):
      raise ValueError(f"objective.sim_distance must be 'l2' or 'pseudo_huber', got {self.sim_distance!r}")
    if self.normaliser not in ("mean_abs", "none"):
      raise ValueError(f"objective.normaliser must be 'mean_abs' or 'none', got {self.normaliser!r}")
    if self.ratio_path not in ("pathwise", "detached"):
      raise ValueError(f"objective.ratio_path must be 'pathwise' or 'detached', got {self.ratio_path!r}")
    if self.labels not in ("data", "uniform"):
      raise ValueError(f"objective.labels must be 'data' or 'uniform', got {self.labels!r}")
    for spec in (self.generator_sigma, self.fake_sigma, self.disc_sigma, self.gan_sigma or "fixed:1"):
      parse_sigma_sampler(spec)
    if self.regression_weight > 0:
      check_distance(self.regression_distance, self.lpips)
    if self.guidance != 1.0 and not self._num_classes():
      raise ValueError("objective.guidance != 1 needs a class-conditional teacher")

  # ----- the networks --------------------------------------------------------------------------------------------

  def _num_classes(self) -> int:
    return dict(self.teacher_network.model_kwargs).get("num_classes", 0)

  def generate(self, params, z, cond, *, train=False, rng=None):
    """x0 = G(z) = D_theta(sigma_init z; sigma_init)."""
    return self.groups["generator"].network.denoise(params, self.sigma_init * z, self.sigma_init, cond,
                                                     train=train, rng=rng)

  def teacher(self, teacher_params, x, sigma, cond):
    """D_phi(x; sigma), classifier-free guided when guidance != 1 (null label = num_classes)."""
    denoise = self.teacher_network.denoise
    if self.guidance == 1.0:
      return denoise(teacher_params, x, sigma, cond)
    both = denoise(teacher_params, jnp.concatenate([x, x]), jnp.concatenate([sigma, sigma]),
                   jnp.concatenate([cond, jnp.full_like(cond, self._num_classes())]))
    conditional, null = jnp.split(both, 2)
    return null + self.guidance * (conditional - null)

  def logit(self, disc_params, x, sigma, cond):
    """(B,) discriminator logits: the mean of the discriminator network's raw output at (x, sigma)."""
    net = self.groups["disc"].network
    x_in, c_noise = net.parameterization.network_inputs(x, sigma)
    raw = net.raw(disc_params, x_in, c_noise, cond).astype(jnp.float32)  # ratios are formed in float32
    return jnp.mean(raw.reshape(x.shape[0], -1), axis=-1)

  def ratio(self, disc_params, x, sigma, cond, pathwise: bool = False):
    """clip(exp(clip(logit)), ratio_min, ratio_max): the density ratio q/p at x, differentiable through x when
    `pathwise` (the discriminator's parameters are never trained by the generator), else stop-gradient."""
    clipped = jnp.clip(self.logit(disc_params, x, sigma, cond), -self.ratio_logit_clip, self.ratio_logit_clip)
    r = jnp.clip(jnp.exp(clipped), self.ratio_min, self.ratio_max)
    return r if pathwise else jax.lax.stop_gradient(r)

  def _labels(self, batch, rng):
    if not self._num_classes():
      return None
    if self.labels == "uniform":
      return jax.random.randint(rng, batch["x"].shape[:1], 0, self._num_classes())
    return batch["label"]

  def _noised(self, x0, spec, rng):
    k_sigma, k_eps = jax.random.split(rng)
    sigma = sample_sigma(spec, k_sigma, x0.shape[0])
    return x0 + diffusion.expand(sigma, x0) * jax.random.normal(k_eps, x0.shape), sigma

  def student_sample(self, params, batch, rng, step):
    """(generator samples G(z) differentiable in params['generator'], their labels or None, None) for an adversarial
    term (objectives/adversarial.py)."""
    del step
    k_z, k_label = jax.random.split(rng)
    cond = self._labels(batch, k_label)
    return self.generate(params["generator"], jax.random.normal(k_z, batch["x"].shape), cond), cond, None

  # ----- losses --------------------------------------------------------------------------------------------------

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux
    k_z, k_label, k_rest = jax.random.split(rng, 3)
    cond = self._labels(batch, k_label)
    z = jax.random.normal(k_z, batch["x"].shape)
    if group == "fake":
      return self._fake_loss(params, z, cond, k_rest)
    if group == "disc":
      return self._disc_loss(params, z, cond, batch, k_rest)
    return self._generator_loss(params, teacher_params, z, cond, batch, k_rest, step)

  def _fake_loss(self, params, z, cond, rng):
    k_noise, k_drop = jax.random.split(rng)
    x0 = jax.lax.stop_gradient(self.generate(params["generator"], z, cond))
    x_sigma, sigma = self._noised(x0, self.fake_sigma, k_noise)
    d = self.groups["fake"].network.denoise(params["fake"], x_sigma, sigma, cond, train=True, rng=k_drop)
    weight = 1.0 / sigma**2 + 1.0 / self.sigma_data**2
    loss, masked = masked_mean(weight * per_sample_sum((d - x0) ** 2))
    return loss, {"masked": masked}

  def _disc_loss(self, params, z, cond, batch, rng):
    k_sigma, k_eps = jax.random.split(rng)
    x0 = jax.lax.stop_gradient(self.generate(params["generator"], z, cond))
    real = batch["x"].astype(x0.dtype)
    sigma = sample_sigma(self.disc_sigma, k_sigma, x0.shape[0])
    noise = diffusion.expand(sigma, x0) * jax.random.normal(k_eps, x0.shape)  # shared by real and fake
    real_cond = batch.get("label") if self._num_classes() else None
    l_real = self.logit(params["disc"], real + noise, sigma, real_cond)
    l_fake = self.logit(params["disc"], x0 + noise, sigma, cond)
    loss, masked = masked_mean(0.5 * (jax.nn.softplus(-l_real) + jax.nn.softplus(l_fake)))
    accuracy = 0.5 * (jnp.mean(l_real > 0) + jnp.mean(l_fake < 0))
    return loss, {"masked": masked, "accuracy": accuracy, "logit_real": jnp.mean(l_real),
                  "logit_fake": jnp.mean(l_fake)}

  def _normaliser(self, x0, d_teacher):
    if self.normaliser == "none":
      return jnp.ones(x0.shape[:1], jnp.float32)
    mean_abs = jnp.mean(jnp.abs(x0 - d_teacher).reshape(x0.shape[0], -1), axis=-1)
    return jax.lax.stop_gradient(jnp.maximum(mean_abs, self.normaliser_eps)).astype(jnp.float32)

  def _ratio_weights(self, r):
    lam, g, c_di = F_WEIGHTS[self.divergence](r)
    if self.weight_normalise:
      scale = jax.lax.stop_gradient(jnp.mean(g))
      lam, g, c_di = lam / scale, g / scale, c_di / scale
    return lam, g, c_di

  def divergence_terms(self, x0, sigma, d_teacher, d_fake, r, warm):
    """Per-sample generator surrogate before the normaliser (see the module docstring). `warm`: bool scalar,
    True while the f-divergence is replaced by SiD(alpha = 1)."""
    delta = d_teacher - d_fake
    sq = per_sample_sum(delta**2)
    sim = per_sample_sum(delta * (d_fake - x0))
    if self.estimator == "sid":
      return (1.0 - self.alpha) * sq + sim
    if self.estimator == "sim":
      if self.sim_distance == "l2":
        return 2.0 * sim
      c = self.sim_c * math.sqrt(math.prod(x0.shape[1:]))
      return sim / jnp.sqrt(jax.lax.stop_gradient(sq) + c**2)
    lam, g, c_di = self._ratio_weights(r)
    if self.estimator == "vsd":
      return per_sample_sum(jax.lax.stop_gradient(diffusion.expand(-g, x0) * delta) * x0)
    terms = (lam - (2.0 * self.divergence_alpha - 1.0) * g) * sq + 2.0 * g * sim
    if self.ratio_path == "detached":
      terms = terms + c_di * jax.lax.stop_gradient(sq / sigma**2) * per_sample_sum(jax.lax.stop_gradient(delta) * x0)
    return jnp.where(warm, sim, terms)

  def _generator_loss(self, params, teacher_params, z, cond, batch, rng, step):
    k_drop, k_noise, k_gan, k_reg = jax.random.split(rng, 4)
    x0 = self.generate(params["generator"], z, cond, train=True, rng=k_drop)
    x_sigma, sigma = self._noised(x0, self.generator_sigma, k_noise)
    d_teacher = self.teacher(teacher_params, x_sigma, sigma, cond)
    d_fake = self.groups["fake"].network.denoise(params["fake"], x_sigma, sigma, cond)
    if self.estimator == "vsd":
      d_teacher, d_fake = jax.lax.stop_gradient(d_teacher), jax.lax.stop_gradient(d_fake)
    warm = jnp.asarray(step) < self.divergence_start
    if needs_ratio(self.estimator, self.divergence):
      pathwise = self.estimator == "f_divergence" and self.ratio_path == "pathwise"
      r = self.ratio(params["disc"], x_sigma, sigma, cond, pathwise=pathwise)
    else:
      r = jnp.ones(x0.shape[:1])
    n = self._normaliser(x0, d_teacher)
    per_sample = self.divergence_terms(x0, sigma, d_teacher, d_fake, r, warm) / n
    metrics = {"normaliser": jnp.mean(n), "ratio_mean": jnp.mean(r), "ratio_max": jnp.max(r),
               "surrogate": jnp.mean(per_sample)}
    if self.gan_weight > 0:
      x_gan, sigma_gan = self._noised(x0, self.gan_sigma, k_gan) if self.gan_sigma else (x_sigma, sigma)
      adv = jax.nn.softplus(-self.logit(params["disc"], x_gan, sigma_gan, cond))
      adv_weight = jnp.where(warm, 0.0, self.gan_weight) / (n if self.gan_over_normaliser else 1.0)
      per_sample = per_sample + adv_weight * adv
      metrics["adversarial"] = jnp.mean(adv)
    if self.regression_weight > 0:
      pairs = full_set_rows(batch)
      pair_cond = pairs.get("label") if self._num_classes() else None
      x_reg = self.generate(params["generator"], pairs["noise"], pair_cond, train=True, rng=k_reg)
      reg = distance(x_reg, pairs["x"].astype(x_reg.dtype), self.regression_distance, lpips=self.lpips)
      per_sample = per_sample + self.regression_weight * reg
      metrics["regression"] = jnp.mean(reg)
    loss, masked = masked_mean(per_sample)
    active = (jnp.asarray(step) >= self.generator_start).astype(loss.dtype)
    return active * loss, {**metrics, "masked": masked}

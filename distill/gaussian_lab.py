"""Exact ground truth for score distillation on Gaussian data: where a learned critic or a gradient goes wrong.

Data N(mu, diag(std^2)) in d dimensions, an exact teacher D_phi (closed form), and a one-step generator built on the
affine `linear` model, so its samples are exactly Gaussian, N(m, A A^T) with m = G(0) and A's columns G(e_j) - m.
Every piece ScoreDistillation estimates then has a closed form to compare against:
- the generator's own denoiser D*(x; sigma) = m + C (C + sigma^2 I)^-1 (x - m), C = A A^T (what the fake score
  D_psi should be);
- the log density ratio log q_sigma(x) - log p_sigma(x) of the noised data and generator marginals (what the
  discriminator's logit should be);
- the generator gradient with both replaced by these exact pieces (`exact_objective`), i.e. the method's gradient
  with perfect critics, against which the learned gradient's cosine is measured.
Conventions: EDM (x_sigma = x0 + sigma n), float32, x of shape (B, d), sigma () or (B,).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from distill import sharding
from distill.networks import Network
from distill.objectives.base import ParamGroup
from distill.objectives.score_distillation import ScoreDistillation, needs_ratio, sample_sigma
from distill.teacher import Teacher
from distill.trainer import Trainer


class IdentityInputs:
  """Parameterisation stand-in for closed-form 'networks': they receive (x, sigma) unchanged."""

  @staticmethod
  def network_inputs(x, sigma):
    return x, jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])


def _variances(cov, sigma, x):
  """(B, d, d) covariances cov + sigma^2 I of the noised marginal, one per row of x."""
  s2 = jnp.broadcast_to(jnp.asarray(sigma, x.dtype) ** 2, x.shape[:1])
  return cov[None] + s2[:, None, None] * jnp.eye(x.shape[-1], dtype=x.dtype)[None]


def gaussian_denoise(mean, cov, x, sigma):
  """E[x0 | x0 + sigma n = x] for x0 ~ N(mean, cov): mean + cov (cov + sigma^2 I)^-1 (x - mean)."""
  solved = jnp.linalg.solve(_variances(cov, sigma, x), (x - mean)[..., None])[..., 0]
  return mean + solved @ cov.T


def gaussian_log_density(mean, cov, x, sigma):
  """log N(x; mean, cov + sigma^2 I), (B,)."""
  v = _variances(cov, sigma, x)
  diff = x - mean
  quad = jnp.sum(diff * jnp.linalg.solve(v, diff[..., None])[..., 0], axis=-1)
  return -0.5 * (quad + jnp.linalg.slogdet(v)[1] + x.shape[-1] * jnp.log(2.0 * jnp.pi))


class ExactDenoiser:
  """Closed-form denoiser of N(params['mean'], params['cov']); also the exact teacher (Teacher-compatible: no
  trainable parameters, so abstract_params() is empty and `params` is given per call)."""

  model_kwargs = ()
  parameterization = IdentityInputs()

  def __init__(self, mean=None, cov=None):
    self.fixed = None if mean is None else {"mean": jnp.asarray(mean, jnp.float32),
                                            "cov": jnp.asarray(cov, jnp.float32)}

  def abstract_params(self):
    return {}

  def denoise(self, params, x, sigma, cond=None, *, train=False, rng=None):
    del cond, train, rng
    p = self.fixed or params
    return gaussian_denoise(p["mean"], p["cov"], x, sigma)


class ExactLogRatio:
  """raw(x) = log q_sigma(x) - log p_sigma(x) in every element (its mean is ScoreDistillation's logit), from
  params {'data': {'mean', 'cov'}, 'generator': {'mean', 'cov'}}."""

  parameterization = IdentityInputs()

  def raw(self, params, x_in, c_noise, cond=None, *, train=False, rng=None):
    del cond, train, rng
    log_q = gaussian_log_density(params["data"]["mean"], params["data"]["cov"], x_in, c_noise)
    log_p = gaussian_log_density(params["generator"]["mean"], params["generator"]["cov"], x_in, c_noise)
    return jnp.broadcast_to((log_q - log_p)[:, None], x_in.shape)


@dataclasses.dataclass(frozen=True)
class GaussianData:
  mean: tuple
  std: tuple

  @property
  def moments(self) -> dict:
    return {"mean": jnp.asarray(self.mean, jnp.float32), "cov": jnp.diag(jnp.asarray(self.std, jnp.float32) ** 2)}

  def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
    return (np.asarray(self.mean) + np.asarray(self.std) * rng.standard_normal((n, len(self.mean)))).astype(np.float32)

  def teacher(self) -> ExactDenoiser:
    m = self.moments
    return ExactDenoiser(m["mean"], m["cov"])


def linear_generator(dim: int, sigma_data: float = 0.5) -> Network:
  """The affine one-step generator network (EDM parameterisation around the `linear` model)."""
  return Network.create({"name": "linear", "dim": dim}, {"name": "edm", "sigma_data": sigma_data})


def generator_moments(objective: ScoreDistillation, generator_params) -> dict:
  """{'mean': m (d,), 'cov': A A^T (d, d)} of an affine generator's samples, exactly (d + 1 evaluations)."""
  dim = objective.groups["generator"].network.config()["dim"]
  z = jnp.concatenate([jnp.zeros((1, dim)), jnp.eye(dim)])
  out = objective.generate(generator_params, z, None)
  a = (out[1:] - out[:1]).T
  return {"mean": out[0], "cov": a @ a.T}


def exact_objective(objective: ScoreDistillation) -> ScoreDistillation:
  """The same objective with the fake score and the discriminator replaced by their closed forms (parameters:
  `exact_critic_params`)."""
  groups = dict(objective.groups)
  groups["fake"] = ParamGroup(ExactDenoiser(), {})
  if "disc" in groups:
    groups["disc"] = ParamGroup(ExactLogRatio(), {})
  return dataclasses.replace(objective, groups=groups)


def exact_critic_params(objective, generator_params, data: GaussianData) -> dict:
  """Parameters of exact_objective's critics for the current generator (constants: no gradient flows into them)."""
  gen = jax.lax.stop_gradient(generator_moments(objective, generator_params))
  return {"fake": gen, "disc": {"data": data.moments, "generator": gen}}


def measure(objective: ScoreDistillation, params, data: GaussianData, rng, num: int = 4096) -> dict:
  """Errors of the learned critics and the learned generator gradient against the exact ones, at the current
  generator (all float):
  - mean_error, std_ratio: |m - mu| / mean(std) and sqrt(diag C) / std averaged over dimensions;
  - fake_error: E|D_psi - D*|^2 over x_sigma ~ p_theta,sigma (generator_sigma), next to signal = E|D_phi - D*|^2
    (the exact Delta the generator follows) and their ratio fake_to_signal;
  - ratio_rmse: RMS error of the discriminator's logit against the exact log ratio at generator samples noised
    with disc_sigma (NaN without a discriminator);
  - grad_cosine: cosine between the generator gradient of the loss with the learned critics and with the exact
    ones, same noise draws; grad_norm_ratio: their norm ratio.
  Values are scalar arrays (jit-compatible)."""
  k_z, k_sigma, k_eps, k_disc, k_loss = jax.random.split(rng, 5)
  theta = params["generator"]
  gen = generator_moments(objective, theta)
  dim = gen["mean"].shape[0]
  x0 = objective.generate(theta, jax.random.normal(k_z, (num, dim)), None)
  sigma = sample_sigma(objective.generator_sigma, k_sigma, num)
  x_sigma = x0 + sigma[:, None] * jax.random.normal(k_eps, x0.shape)
  exact_fake = gaussian_denoise(gen["mean"], gen["cov"], x_sigma, sigma)
  learned_fake = objective.groups["fake"].network.denoise(params["fake"], x_sigma, sigma)
  teacher = gaussian_denoise(data.moments["mean"], data.moments["cov"], x_sigma, sigma)
  fake_error = jnp.mean(jnp.sum((learned_fake - exact_fake) ** 2, -1))
  signal = jnp.mean(jnp.sum((teacher - exact_fake) ** 2, -1))
  out = {"mean_error": jnp.linalg.norm(gen["mean"] - data.moments["mean"]) / jnp.mean(jnp.asarray(data.std)),
         "std_ratio": jnp.mean(jnp.sqrt(jnp.diag(gen["cov"])) / jnp.asarray(data.std)),
         "fake_error": fake_error, "signal": signal, "fake_to_signal": fake_error / jnp.maximum(signal, 1e-30),
         "ratio_rmse": jnp.asarray(jnp.nan)}
  if "disc" in objective.groups:
    s_disc = sample_sigma(objective.disc_sigma, k_disc, num)
    x_disc = x0 + s_disc[:, None] * jax.random.normal(jax.random.fold_in(k_disc, 1), x0.shape)
    exact = gaussian_log_density(data.moments["mean"], data.moments["cov"], x_disc, s_disc) - gaussian_log_density(
        gen["mean"], gen["cov"], x_disc, s_disc)
    out["ratio_rmse"] = jnp.sqrt(jnp.mean((objective.logit(params["disc"], x_disc, s_disc, None) - exact) ** 2))
  batch = {"x": jnp.zeros((num, dim))}
  step = jnp.asarray(objective.divergence_start)  # the divergence phase's gradient, also during the warm-up

  def grad(obj, critics):
    loss = lambda t: obj.loss("generator", {**params, **critics, "generator": t}, None, None, batch, k_loss, step)[0]
    return jax.flatten_util.ravel_pytree(jax.grad(loss)(theta))[0]

  learned = grad(objective, {})
  exact = grad(exact_objective(objective), exact_critic_params(objective, theta, data))
  out["grad_cosine"] = jnp.dot(learned, exact) / jnp.maximum(jnp.linalg.norm(learned) * jnp.linalg.norm(exact), 1e-30)
  out["grad_norm_ratio"] = jnp.linalg.norm(learned) / jnp.maximum(jnp.linalg.norm(exact), 1e-30)
  return out


REPLICATED = tuple((name, None) for name in ("embed", "mlp", "conv_in", "conv_out", "norm", "vocab"))


def lab_objective(data: GaussianData, options: dict, optim: dict, critic: dict | None = None,
                  critic_optim: dict | None = None) -> ScoreDistillation:
  """ScoreDistillation on `data`'s exact teacher with the affine generator and learned critics: an MLP fake score
  and (when the divergence needs a ratio or a GAN term) an MLP discriminator of model config `critic`, both at
  random init. `options` are ScoreDistillation fields (configs/common.score_distillation_objective's minus the
  builder keys); `optim` the generator's config.optim dict, `critic_optim` the critics' (default: the same);
  optional 'fake_learning_rate' / 'disc_learning_rate' in options override the critics' rate."""
  options, critic_optim = dict(options), critic_optim or optim
  critic_lr = {g: options.pop(f"{g}_learning_rate", 0.0) or critic_optim["learning_rate"] for g in ("fake", "disc")}
  dim = len(data.mean)
  critic_net = Network.create({"name": "mlp", "dim": dim, **(critic or {"width": 64, "depth": 2, "emb_dim": 32})},
                              {"name": "edm", "sigma_data": options.get("sigma_data", 0.5)})
  groups = {"fake": ParamGroup(critic_net, critic_optim | {"learning_rate": critic_lr["fake"]})}
  if needs_ratio(options.get("estimator", "f_divergence"), options.get("divergence", "rkl")) or options.get(
      "gan_weight", 0.0) > 0:
    groups["disc"] = ParamGroup(critic_net, critic_optim | {"learning_rate": critic_lr["disc"]})
  groups["generator"] = ParamGroup(linear_generator(dim, options.get("sigma_data", 0.5)), optim)
  return ScoreDistillation(groups=groups, teacher_network=data.teacher(), **options)


def train(objective: ScoreDistillation, data: GaussianData, num_steps: int, batch_size: int = 256,
          measure_every: int = 0, seed: int = 0, measure_num: int = 4096, mesh=None,
          rules=REPLICATED, ema: float = 0.0) -> tuple[dict, list[dict]]:
  """Train `objective` with the generic Trainer (one device, parameters replicated, unless `mesh` and sharding
  `rules` say otherwise), real batches drawn from `data`; returns (final params, [{'step': s, **measure(...)}] every
  `measure_every` steps and at the end). With `ema` > 0 the generator measured and returned is its EMA of that
  decay (with the trainer's warm-up); the critics are always the trained ones."""
  mesh = mesh or sharding.make_mesh({"data": 1})
  teacher = Teacher(network=objective.teacher_network, params={})
  trainer = Trainer(objective, mesh, rules, {"decay": ema, "warmup": True}, seed, teacher)
  state, teacher_params = trainer.init_state(), trainer.teacher_params()
  measured = jax.jit(lambda params, key: measure(objective, params, data, key, measure_num))
  rng, rows = np.random.default_rng(seed), []
  for step in range(1, num_steps + 1):
    state, _ = trainer.step(state, teacher_params, sharding.global_batch({"x": data.sample(rng, batch_size)}, mesh))
    if (measure_every and step % measure_every == 0) or step == num_steps:
      params = {**state.params, "generator": state.ema["generator"]}
      rows.append({"step": step, **{k: float(v) for k, v in measured(params, jax.random.key(step)).items()}})
  return {**state.params, "generator": state.ema["generator"]}, rows

"""Score distillation (Uni-Instruct family, SiD, SIM, Diff-Instruct / DMD / f-distill directions).

The exact-gradient test: a Gaussian teacher q0 = N(mu, a^2 I) and a Gaussian generator G(z) = m + s z have exact
denoisers and an exact log density ratio at every sigma. Plugging them in for the teacher, the fake score and the
discriminator, the objective's Monte-Carlo generator gradient must equal, within Monte-Carlo error,
- for the Uni-Instruct estimator: grad_theta E_{p_sigma}[g(r) |D_q - D_p|^2];
- for the detached (VSD) direction: sigma^2 grad_theta E_{p_sigma}[f(q_sigma / p_sigma)],
both computed here independently by Gauss-Hermite quadrature and central finite differences.
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import samplers
from configs import common, tiny
from distill import api, cli, run
from distill.data import DataSpec
from distill.errors import UserError
from distill.objectives import SCORE_DISTILLATION_BUILDER_KEYS, build
from distill.objectives.base import ParamGroup
from distill.objectives.score_distillation import ScoreDistillation, karras_sigma, parse_sigma_sampler, sample_sigma
from distill.teacher import load_teacher
from distill.trainer import learning_rate_schedule

SIGMA = 0.7
# f(r), r = q / p, written out independently of the code's weight table.
F = {
    "rkl": lambda r: -np.log(r),
    "fkl": lambda r: r * np.log(r),
    "jeffreys": lambda r: (r - 1) * np.log(r),
    "js": lambda r: r * np.log(r) - (1 + r) * np.log((1 + r) / 2),
    "chi2": lambda r: (r - 1) ** 2,
    "hellinger": lambda r: (np.sqrt(r) - 1) ** 2,
}
G = {"rkl": lambda r: 1 + 0 * r, "fkl": lambda r: r, "jeffreys": lambda r: 1 + r, "js": lambda r: r / (1 + r),
     "chi2": lambda r: 2 * r**2, "hellinger": lambda r: 0.5 * np.sqrt(r)}


class _Param:
  """Stand-in for a parameterisation: the analytic 'networks' below take (x, sigma) directly."""

  @staticmethod
  def network_inputs(x, sigma):
    return x, sigma


class GaussianDenoiser:
  """Exact denoiser of N(mean, var) data (elementwise) at noise sigma; params = {'mean': (d,), 'std': (d,)}."""

  model_kwargs = ()
  parameterization = _Param()

  def denoise(self, params, x, sigma, cond=None, *, train=False, rng=None):
    del cond, train, rng
    s2 = jnp.reshape(sigma, (-1, 1)) ** 2
    return x - s2 * (x - params["mean"]) / (params["std"] ** 2 + s2)


class Generator:
  """G(z) = mean + std * z, called as the denoiser D(sigma_init z; sigma_init)."""

  model_kwargs = ()

  def denoise(self, params, x, sigma, cond=None, *, train=False, rng=None):
    del cond, train, rng
    return params["mean"] + params["std"] * x / sigma


class LogRatio:
  """raw(x) = log q_sigma(x) - log p_sigma(x) in every element (so its mean is the exact logit)."""

  parameterization = _Param()

  def __init__(self, teacher):
    self.teacher = teacher

  def raw(self, params, x, sigma, cond=None):
    s2 = jnp.reshape(sigma, (-1, 1)) ** 2

    def log_density(p):
      var = p["std"] ** 2 + s2
      return jnp.sum(-0.5 * (x - p["mean"]) ** 2 / var - 0.5 * jnp.log(var), axis=-1, keepdims=True)

    return jnp.broadcast_to(log_density(self.teacher) - log_density(params), x.shape)


def _objective(teacher, **kwargs):
  groups = {"fake": ParamGroup(GaussianDenoiser(), {}), "disc": ParamGroup(LogRatio(teacher), {}),
            "generator": ParamGroup(Generator(), {})}
  options = dict(generator_sigma=f"fixed:{SIGMA}", normaliser="none", weight_normalise=False, ratio_min=0.0,
                 ratio_max=1e30, ratio_logit_clip=1e4, sigma_init=2.5)
  return ScoreDistillation(groups=groups, teacher_network=GaussianDenoiser(), **(options | kwargs))


def _mc_gradient(objective, teacher, theta, num=100_000, chunks=8):
  """Mean and standard error over `chunks` independent estimates of grad_theta of the generator loss."""
  d = theta["mean"].shape[0]

  @jax.jit
  def grad(theta, key):
    def loss(theta):
      params = {"generator": theta, "fake": jax.lax.stop_gradient(theta), "disc": jax.lax.stop_gradient(theta)}
      return objective.loss("generator", params, {}, teacher, {"x": jnp.zeros((num, d))}, key, 0)[0]

    g = jax.grad(loss)(theta)
    return jnp.concatenate([g["mean"], g["std"]])

  draws = np.stack([np.asarray(grad(theta, jax.random.key(i))) for i in range(chunks)]).astype(np.float64)
  return draws.mean(0), draws.std(0, ddof=1) / math.sqrt(chunks)


def _quadrature(fn, mean, std, nodes=120):
  """E[fn(x)] for x ~ N(mean, diag(std^2)) in 1-D or 2-D by (tensor) Gauss-Hermite."""
  t, w = np.polynomial.hermite.hermgauss(nodes)
  t, w = t * math.sqrt(2), w / math.sqrt(math.pi)
  if len(mean) == 1:
    return np.sum(w * fn((mean[0] + std[0] * t)[:, None]))
  xx, yy = np.meshgrid(mean[0] + std[0] * t, mean[1] + std[1] * t, indexing="ij")
  return np.sum(np.outer(w, w).ravel() * fn(np.stack([xx.ravel(), yy.ravel()], -1)))


def _exact_gradient(target, theta):
  """Central differences of target(mean, std) (float64 numpy) in each coordinate of theta = (mean, std)."""
  flat = np.concatenate([theta["mean"], theta["std"]]).astype(np.float64)
  d, h, out = len(theta["mean"]), 1e-5, []
  for i in range(len(flat)):
    up, down = flat.copy(), flat.copy()
    up[i] += h
    down[i] -= h
    out.append((target(up[:d], up[d:]) - target(down[:d], down[d:])) / (2 * h))
  return np.array(out)


def _marginals(teacher, mean, std):
  """(log r(x), D_q(x) - D_p(x)) as functions of x (n, d), float64, for teacher N(mu, a^2) and generator N(mean, std^2)."""
  mu, a = np.asarray(teacher["mean"], np.float64), np.asarray(teacher["std"], np.float64)
  vq, vp = a**2 + SIGMA**2, std**2 + SIGMA**2

  def log_ratio(x):
    return np.sum(-0.5 * (x - mu) ** 2 / vq - 0.5 * np.log(vq) + 0.5 * (x - mean) ** 2 / vp + 0.5 * np.log(vp), -1)

  def delta(x):
    return SIGMA**2 * ((x - mean) / vp - (x - mu) / vq)

  return log_ratio, delta


CASES = [(dim, div) for dim in (1, 2) for div in F]


def _setup(dim):
  teacher = {"mean": jnp.array([0.2, -0.1][:dim]), "std": jnp.array([1.0, 0.8][:dim])}
  theta = {"mean": jnp.array([0.5, 0.3][:dim]), "std": jnp.array([1.2, 1.1][:dim])}
  return teacher, theta


def _f_divergence_target(teacher, divergence):
  def target(m, s):
    log_ratio, delta = _marginals(teacher, m, s)
    return _quadrature(lambda x: G[divergence](np.exp(log_ratio(x))) * np.sum(delta(x) ** 2, -1), m,
                       np.sqrt(s**2 + SIGMA**2))

  return target


def _close(mean, se, exact):
  return np.abs(mean - exact) < 4 * se + 1e-3 * np.abs(exact).max()


@pytest.mark.parametrize("dim,divergence", CASES)
def test_uni_instruct_gradient_is_the_exact_f_divergence_gradient(dim, divergence):
  teacher, theta = _setup(dim)
  objective = _objective(teacher, estimator="f_divergence", divergence=divergence)
  mean, se = _mc_gradient(objective, teacher, theta)
  exact = _exact_gradient(_f_divergence_target(teacher, divergence), theta)
  assert np.all(_close(mean, se, exact)), (mean, se, exact)


@pytest.mark.parametrize("divergence", ["fkl", "js", "chi2"])
def test_detached_ratio_decomposition_is_exact_only_for_the_shift(divergence):
  """The spec's (Lambda, 2g, c_DI) form with a stop-gradient ratio drops a term whose conditional mean vanishes
  only when dx0/dtheta is constant: exact for the generator's mean, measurably off for its scale."""
  teacher, theta = _setup(1)
  objective = _objective(teacher, estimator="f_divergence", divergence=divergence, ratio_path="detached")
  mean, se = _mc_gradient(objective, teacher, theta)
  exact = _exact_gradient(_f_divergence_target(teacher, divergence), theta)
  assert _close(mean, se, exact)[0], (mean, se, exact)
  assert abs(mean[1] - exact[1]) > 10 * se[1], (mean, se, exact)


@pytest.mark.parametrize("dim,divergence", CASES)
def test_detached_direction_is_sigma_squared_times_the_f_divergence_gradient(dim, divergence):
  teacher, theta = _setup(dim)
  objective = _objective(teacher, estimator="vsd", divergence=divergence)
  mean, se = _mc_gradient(objective, teacher, theta)

  def target(m, s):
    log_ratio, _ = _marginals(teacher, m, s)
    return SIGMA**2 * _quadrature(lambda x: F[divergence](np.exp(log_ratio(x))), m, np.sqrt(s**2 + SIGMA**2))

  exact = _exact_gradient(target, theta)
  assert np.all(_close(mean, se, exact)), (mean, se, exact)


# ----- identities between the estimators, stop-gradients --------------------------------------------------------


def _loss(objective, teacher, theta, key=0, num=512, d=2):
  params = {"generator": theta, "fake": theta, "disc": theta}
  return objective.loss("generator", params, {}, teacher, {"x": jnp.zeros((num, d))}, jax.random.key(key), 0)[0]


def test_reverse_kl_is_twice_sid_at_one_half_and_sim_l2_is_twice_sid_at_one():
  teacher, theta = _setup(2)
  for key in range(3):
    rkl = _loss(_objective(teacher, estimator="f_divergence", divergence="rkl"), teacher, theta, key)
    sid_half = _loss(_objective(teacher, estimator="sid", alpha=0.5), teacher, theta, key)
    np.testing.assert_allclose(rkl, 2 * sid_half, rtol=1e-5)
    # divergence_alpha carries SiD's alpha to every divergence: rkl is twice SiD(alpha), fkl the r-weighted SiD(alpha)
    rkl_12 = _loss(_objective(teacher, estimator="f_divergence", divergence="rkl", divergence_alpha=1.2), teacher,
                   theta, key)
    np.testing.assert_allclose(rkl_12, 2 * _loss(_objective(teacher, estimator="sid", alpha=1.2), teacher, theta, key),
                               rtol=1e-5)
    sim = _loss(_objective(teacher, estimator="sim", sim_distance="l2"), teacher, theta, key)
    sid_one = _loss(_objective(teacher, estimator="sid", alpha=1.0), teacher, theta, key)
    np.testing.assert_allclose(sim, 2 * sid_one, rtol=1e-5)
    # Before divergence_start every f-divergence is SiD(alpha = 1), and generator_start freezes the generator.
    warm = _objective(teacher, estimator="f_divergence", divergence="chi2", divergence_start=10)
    np.testing.assert_allclose(_loss(warm, teacher, theta, key), sid_one, rtol=1e-5)
    frozen = _objective(teacher, estimator="sid", generator_start=10)
    assert float(_loss(frozen, teacher, theta, key)) == 0.0


def test_weight_normalisation_rescales_each_batch_by_a_positive_constant():
  """Dividing the ratio weights by sg(mean g) keeps every per-sample weight's sign and ratios between samples."""
  teacher, theta = _setup(1)
  plain = _objective(teacher, estimator="vsd", divergence="fkl")
  normalised = _objective(teacher, estimator="vsd", divergence="fkl", weight_normalise=True)
  theta = {"mean": theta["mean"], "std": theta["std"]}
  grad = lambda o: jax.grad(lambda t: _loss(o, teacher, t, d=1))(theta)
  a, b = grad(plain), grad(normalised)
  scale = float(a["mean"][0] / b["mean"][0])
  assert scale > 0  # one positive factor (the batch mean of g(r) = r) relates the two gradients
  np.testing.assert_allclose(float(a["std"][0] / b["std"][0]), scale, rtol=1e-4)


def test_discriminator_loss_is_minimised_by_the_exact_log_ratio():
  """The discriminator's BCE (data as 1, generator samples as 0, both noised with one sigma and eps) is minimised by
  the logit log q_sigma / p_sigma, data over generator. The exact-ratio 'discriminator' LogRatio(teacher) takes a
  candidate generator (mean, std) as its parameters: the Monte-Carlo gradient of the discriminator loss vanishes at
  the true generator, and a displaced candidate is pulled back towards it (swapped labels would push it away)."""
  teacher, theta = _setup(2)
  objective = _objective(teacher, disc_sigma="lognormal:-1.2,1.2")
  num, chunks = 100_000, 8

  @jax.jit
  def grad(disc, key):
    k_data, k_loss = jax.random.split(key)
    real = teacher["mean"] + teacher["std"] * jax.random.normal(k_data, (num, 2))
    g = jax.grad(lambda d: objective.loss("disc", {"generator": theta, "fake": theta, "disc": d}, {}, teacher,
                                          {"x": real}, k_loss, 0)[0])(disc)
    return jnp.concatenate([g["mean"], g["std"]])

  def mean_and_se(disc):
    draws = np.stack([np.asarray(grad(disc, jax.random.key(i))) for i in range(chunks)]).astype(np.float64)
    return draws.mean(0), draws.std(0, ddof=1) / math.sqrt(chunks)

  mean, se = mean_and_se(theta)
  assert np.all(np.abs(mean) < 4 * se), (mean, se)
  # Displace the x mean up and the y std down: descent must lower the one and raise the other.
  displaced = {"mean": theta["mean"] + jnp.array([0.3, 0.0]), "std": theta["std"] * jnp.array([1.0, 0.7])}
  mean, se = mean_and_se(displaced)
  assert mean[0] > 10 * se[0] and mean[3] < -10 * se[3], (mean, se)


def test_critic_losses_do_not_move_the_generator_and_the_direction_is_detached():
  teacher, theta = _setup(2)
  objective = _objective(teacher, estimator="vsd", divergence="fkl")
  batch = {"x": jnp.ones((64, 2))}
  for group in ("fake", "disc"):
    grads = jax.grad(lambda g: objective.loss(group, {"generator": g, "fake": theta, "disc": theta}, {}, teacher,
                                              batch, jax.random.key(1), 0)[0])(theta)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(grads)), group
  # The detached (VSD) direction: no gradient reaches the fake score or the discriminator through the generator loss.
  for name in ("fake", "disc"):
    grads = jax.grad(lambda p: objective.loss("generator", {"generator": theta, "fake": theta, "disc": theta} | {
        name: p}, {}, teacher, batch, jax.random.key(1), 0)[0])(theta)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(grads)), name


def test_sigma_samplers():
  key = jax.random.key(0)
  karras = np.asarray(sample_sigma("karras:0.8", key, 100_000))
  assert karras.min() >= 0.002 - 1e-6 and karras.max() <= karras_sigma(0.2) + 1e-4
  np.testing.assert_allclose(karras_sigma(0.2), 24.41, rtol=1e-3)  # u_max = 0.8 -> sigma <= 24.4 (SiD's tmax 800)
  index = np.asarray(sample_sigma("karras_index:20,980", key, 100_000))
  np.testing.assert_allclose([index.min(), index.max()], [0.0032, 72.05], rtol=2e-2)
  lognormal = np.log(np.asarray(sample_sigma("lognormal:-1.2,1.2", key, 100_000)))
  np.testing.assert_allclose([lognormal.mean(), lognormal.std()], [-1.2, 1.2], atol=0.02)
  np.testing.assert_array_equal(sample_sigma("fixed:0.3", key, 4), np.full(4, 0.3, np.float32))
  with pytest.raises(ValueError, match="bad sigma sampler 'karras'"):
    parse_sigma_sampler("karras")


# ----- bad input, training schedule and the exported one-step sampler ----------------------------------------------


def _tiny_config(teacher_bundle, method, **objective):
  c = tiny.get_config()
  c.objective = common.score_distillation_objective(method, **objective)
  c.teacher.bundle = teacher_bundle
  c.optim.update(warmup_steps=0, b1=0.0)
  common.one_step_sampler(c)
  return c


def test_bad_configs_are_one_clear_line(tiny_teacher_bundle):
  spec = DataSpec("points", (2,), 0, (-4.0, 4.0))
  teacher = _tiny_teacher(tiny_teacher_bundle)
  with pytest.raises(ValueError, match="unknown objective.divergence 'kl'; choose one of rkl, fkl"):
    build(_tiny_config(tiny_teacher_bundle, "uni_instruct", divergence="kl"), spec, teacher)
  with pytest.raises(ValueError, match="divergence 'js' weights samples by the density ratio.*discriminator=True"):
    build(_tiny_config(tiny_teacher_bundle, "uni_instruct", divergence="js", discriminator=False), spec, teacher)
  wide = _tiny_config(tiny_teacher_bundle, "sid")
  wide.model.width *= 2
  with pytest.raises(UserError, match=r"does not match the configured architecture \(teacher -> config: model.width"):
    build(wide, spec, teacher)
  with pytest.raises(UserError, match="needs a teacher"):
    build(_tiny_config(tiny_teacher_bundle, "sid"), spec, None)


def test_critic_schedule_keeps_the_critics_rate_while_the_generator_decays(tiny_teacher_bundle):
  """critic_schedule='constant': the fake score and discriminator keep their rate (after the shared warm-up) while the
  generator follows optim.schedule; '' gives every group the generator's schedule."""
  spec = DataSpec("points", (2,), 0, (-4.0, 4.0))
  teacher = _tiny_teacher(tiny_teacher_bundle)
  config = _tiny_config(tiny_teacher_bundle, "dmd2", critic_schedule="constant", fake_learning_rate=3e-4)
  config.optim.update(learning_rate=1e-4, schedule="cosine", decay_steps=100, warmup_steps=10)
  groups = build(config, spec, teacher).groups
  rate = {name: learning_rate_schedule(group.optim) for name, group in groups.items()}
  np.testing.assert_allclose([rate["fake"](s) for s in (5, 10, 100)], [1.5e-4, 3e-4, 3e-4], rtol=1e-6)
  np.testing.assert_allclose([rate["disc"](s) for s in (5, 10, 100)], [5e-5, 1e-4, 1e-4], rtol=1e-6)
  np.testing.assert_allclose([rate["generator"](s) for s in (5, 10, 55, 100)], [5e-5, 1e-4, 5e-5, 0.0], atol=1e-10)
  config.objective.critic_schedule = ""
  shared = build(config, spec, teacher).groups
  assert float(learning_rate_schedule(shared["fake"].optim)(100)) == 0.0
  config.objective.critic_schedule = "cosine"
  with pytest.raises(UserError, match="objective.critic_schedule must be '' .* or 'constant', got 'cosine'"):
    build(config, spec, teacher)


def _tiny_teacher(bundle):
  return load_teacher(ml_collections.ConfigDict(dict(bundle=bundle, workdir="", dtype="float32")))


def test_two_time_scale_schedule_and_one_step_export(tiny_teacher_bundle, tmp_path):
  """DMD2's preset updates the fake score and the discriminator every step and the generator every fifth step;
  the exported sampler is one evaluation of the EMA generator, x0 = D(sigma_init z; sigma_init)."""
  config = _tiny_config(tiny_teacher_bundle, "dmd2", disc_init="random")
  config.train.update(num_steps=10, log_every=1, eval_every=0, ckpt_every=10)
  config.mesh.data = 1
  workdir = str(tmp_path / "dmd2")
  run.train(config, workdir)
  rows = {r["step"]: r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if "fake/loss" in r}
  assert sorted(rows) == list(range(1, 11))  # logged every step: the fake score and discriminator every step
  assert all("disc/loss" in r for r in rows.values())
  assert [s for s, r in sorted(rows.items()) if "generator/loss" in r] == [5, 10]  # the generator every fifth

  bundle = api.export(workdir, str(tmp_path / "export"))
  sampler = samplers.load(bundle)
  assert sampler.nfe(None) == 1 and sampler.meta["sampler"]["sigma_max"] == 80.0
  x = sampler.sample(jax.random.key(3), 16)
  z = samplers.initial_noise(samplers.sample_keys(jax.random.key(3), np.arange(16)), (2,))
  direct = sampler.network.denoise(sampler.params, 80.0 * z, 80.0)
  np.testing.assert_allclose(x, np.asarray(direct), rtol=1e-5, atol=1e-5)


def test_contract_command_distils_and_exports(tiny_teacher_bundle, tmp_path, divergence="js"):
  """`distill train --config configs/toy2d_uni_instruct.py ... --config.objective.divergence=D` with a reused
  teacher (the tiny one, so the stage's model is set to its size), then `distill export` and one-step sampling."""
  workdir, out = str(tmp_path / "ui"), str(tmp_path / "bundle")
  assert cli.main(["train", "--config", "configs/toy2d_uni_instruct.py", "--workdir", workdir,
                   "--config.data.source=toy:moons", f"--config.teacher.bundle={tiny_teacher_bundle}",
                   f"--config.objective.divergence={divergence}", "--config.objective.divergence_start=2",
                   "--config.stages.distill.config.model.width=32", "--config.stages.distill.config.model.depth=2",
                   "--config.stages.distill.config.model.emb_dim=16", "--config.stages.distill.config.train.num_steps=4",
                   "--config.stages.distill.config.data.batch_size=64", "--config.mesh.data=1",
                   "--config.stages.pairs.num=128", "--config.stages.pairs.steps=4"]) == 0
  record = json.load(open(os.path.join(workdir, "distill", "config.json")))["objective"]
  assert record["divergence"] == divergence and record["estimator"] == "f_divergence"
  assert record["regression_weight"] == 1.0 and os.path.isdir(os.path.join(workdir, "pairs"))
  assert cli.main(["export", "--workdir", workdir, "--out", out]) == 0
  sampler = samplers.load(out)
  x = sampler.sample(jax.random.key(0), 8)
  assert x.shape == (8, 2) and np.all(np.isfinite(x)) and sampler.nfe(None) == 1


def test_every_score_distillation_config_names_only_known_options():
  import importlib

  names = ["toy2d_sid", "toy2d_sida", "toy2d_uni_instruct", "toy2d_dmd2", "mnist_sid", "mnist_sida",
           "mnist_uni_instruct", "cifar10_sid", "cifar10_uni_instruct", "mnist_msd", "mnist_msd:sid_regression"]
  teacher, _ = _setup(1)
  for name in names:
    module, _, variant = name.partition(":")
    config = importlib.import_module(f"configs.{module}").get_config(*([variant] if variant else []))
    stages = ([config.stages[s].config for s in config.pipeline.stages if config.stages[s].kind == "train"]
              if "stages" in config else [config])
    sections = [c.objective for c in stages if c.objective.name == "score_distillation"]
    assert sections, name
    for section in sections:
      o = {k: v for k, v in section.items() if k not in SCORE_DISTILLATION_BUILDER_KEYS}
      _objective(teacher, **o)  # raises on an unknown key or value
  for method in common.SCORE_DISTILLATION_PRESETS:
    assert common.score_distillation_objective(method).name == "score_distillation"


class _LabelShift:
  """A conditional 'teacher': D(x; sigma, c) = x + c (the null label num_classes gives x + num_classes)."""

  model_kwargs = (("num_classes", 10),)

  def denoise(self, params, x, sigma, cond=None, **kwargs):
    del params, sigma, kwargs
    return x + cond[:, None].astype(x.dtype)


def test_teacher_guidance_and_labels():
  objective = ScoreDistillation(groups={"generator": ParamGroup(Generator(), {}), "fake": ParamGroup(Generator(), {})},
                                teacher_network=_LabelShift(), estimator="sid", guidance=3.0, labels="uniform")
  x, cond = jnp.zeros((4, 2)), jnp.array([0, 1, 2, 9])
  # null + w (cond - null) = 10 + 3 (c - 10)
  np.testing.assert_allclose(objective.teacher(None, x, jnp.ones(4), cond), (10 + 3 * (cond - 10.0))[:, None]
                             * np.ones((4, 2)))
  labels = np.asarray(objective._labels({"x": jnp.zeros((4000, 2))}, jax.random.key(0)))
  assert labels.min() == 0 and labels.max() == 9 and abs(labels.mean() - 4.5) < 0.2
  with pytest.raises(ValueError, match="guidance != 1 needs a class-conditional teacher"):
    ScoreDistillation(groups={}, teacher_network=GaussianDenoiser(), guidance=2.0)


def test_dmd_regression_term_is_the_distance_of_the_pairs():
  teacher, theta = _setup(2)
  objective = _objective(teacher, estimator="vsd", regression_weight=0.25)
  noise = jax.random.normal(jax.random.key(5), (256, 2))
  target = jnp.asarray(np.random.default_rng(0).normal(size=(256, 2)), jnp.float32)
  params = {"generator": theta, "fake": theta, "disc": theta}
  _, metrics = objective.loss("generator", params, {}, teacher, {"x": target, "noise": noise}, jax.random.key(1), 0)
  expected = jnp.mean(jnp.mean((theta["mean"] + theta["std"] * noise - target) ** 2, axis=1))
  np.testing.assert_allclose(metrics["regression"], expected, rtol=1e-5)

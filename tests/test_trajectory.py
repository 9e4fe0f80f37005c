"""Trajectory baselines (spec reflow_trajectory_family.md §3, §7, §11.6): consistency models (CD / CT / iCT),
progressive distillation and BOOT, checked against closed forms on analytic Gaussian and point-mass teachers, plus
bit-identical resume of each objective and the one-command 2-D pipelines with one-step export."""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.stats

from configs import common, tiny
from distill import analytic, diffusion, run
from distill.networks import Network
from distill.objectives.boot import Boot, bootstrap_target, signal
from distill.objectives.consistency import Consistency, index_logits, karras_level, num_scales, target_rate
from distill.objectives.progressive import ProgressiveDistillation, ddim_step, ddim_target
from flow_stubs import AnalyticNetwork


def mlp(parameterization: dict) -> Network:
  return Network.create({"name": "mlp", "dim": 2, "width": 16, "depth": 1, "emb_dim": 8}, parameterization)


def random_params(net: Network):
  """Parameters with every leaf drawn N(0, 0.3^2) (a fresh MLP's zero output layer would hide the input)."""
  params = net.init(jax.random.key(0))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])


def gaussian_pf_ode(x_start, sigma_start, sigma, mu, std):
  """Exact probability-flow ODE solution for data N(mu, std^2): x_sigma = mu + (x_start - mu) sqrt((std^2 + sigma^2)
  / (std^2 + sigma_start^2))."""
  return mu + (x_start - mu) * np.sqrt((std**2 + sigma**2) / (std**2 + sigma_start**2))


# ----- consistency models ----------------------------------------------------------------------------------------


def test_consistency_boundary_holds_bit_exactly_and_the_preconditioning_tends_to_edm():
  net = mlp({"name": "consistency", "sigma_data": 0.5, "sigma_min": 0.002})
  params = random_params(net)
  x = jax.random.normal(jax.random.key(1), (64, 2)) * 3.0
  np.testing.assert_array_equal(np.asarray(net.denoise(params, x, 0.002)), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(net.denoise(params, x, jnp.full((64,), 0.002))), np.asarray(x))
  assert not np.allclose(net.denoise(params, x, 0.5), x)
  # Far from sigma_min the coefficients are EDM's: the same raw network gives (almost) the EDM denoiser.
  edm = Network(net.model_name, net.model_kwargs, diffusion.EDMParameterization(0.5))
  np.testing.assert_allclose(net.denoise(params, x, 40.0), edm.denoise(params, x, 40.0), rtol=1e-4, atol=1e-4)


def test_consistency_curricula_match_their_formulas():
  # iCT: N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)) = 100 for K = 800.
  ict = lambda k: int(num_scales("ict", k, 800, 10, 1280, 0))
  assert [ict(k) for k in (0, 99, 100, 250, 699, 700, 799)] == [11, 11, 21, 41, 641, 1281, 1281]
  # CT (the official code): N = max(ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1), 1) + 1, mu = mu0^(s0 / (N - 1)).
  for k in (0, 137, 500, 1000):
    intervals = max(math.ceil(math.sqrt(k / 1000 * (151**2 - 4) + 4) - 1), 1)
    n = num_scales("ct", k, 1000, 2, 150, 0)
    assert int(n) == intervals + 1
    np.testing.assert_allclose(float(target_rate("ct", n, 2, 0.9)), 0.9 ** (2 / intervals), rtol=1e-6)
  assert float(target_rate("ict", num_scales("ict", 0, 800, 10, 1280, 0), 10, 0.0)) == 0.0


def test_ict_lognormal_pair_distribution_is_the_lognormal_mass_between_adjacent_levels():
  n_scales, size = 21, 41
  logits = index_logits("lognormal", jnp.asarray(n_scales), size, 0.002, 80.0, 7.0, -1.1, 2.0)
  p = np.asarray(jax.nn.softmax(logits))
  levels = np.asarray([karras_level(i, n_scales, 0.002, 80.0, 7.0) for i in range(n_scales)], np.float64)
  cdf = scipy.stats.norm(-1.1, 2.0).cdf(np.log(levels))
  expected = (cdf[:-1] - cdf[1:]) / (cdf[0] - cdf[-1])  # ln sigma in [ln sigma_{n+1}, ln sigma_n], normalised
  np.testing.assert_allclose(p[: n_scales - 1], expected, rtol=1e-4)
  assert np.all(p[n_scales - 1:] == 0.0)
  uniform = np.asarray(jax.nn.softmax(index_logits("uniform", jnp.asarray(5), size, 0.002, 80.0, 7.0, 0.0, 1.0)))
  np.testing.assert_allclose(uniform[:4], 0.25) and np.testing.assert_array_equal(uniform[4:], 0.0)


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2)])
def test_consistency_distillation_teacher_step_converges_at_the_solver_order(solver, order):
  mu, std = 0.3, 0.7
  objective = Consistency(groups={}, teacher_network=AnalyticNetwork(analytic.gaussian_denoiser(mu, std)),
                          teacher_solver=solver, curriculum="fixed", index_sampling="uniform", weighting="uniform",
                          distance="l2")
  x = np.linspace(-4.0, 4.0, 9, dtype=np.float64)[:, None]
  errors = []
  with jax.enable_x64(True):
    for h in (0.1, 0.05, 0.025):
      got = objective.teacher_step(None, jnp.asarray(x), jnp.asarray(1.0), jnp.asarray(1.0 - h), None)
      errors.append(np.abs(np.asarray(got) - gaussian_pf_ode(x, 1.0, 1.0 - h, mu, std)).max())
  rates = np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:]))
  np.testing.assert_allclose(rates, order + 1, atol=0.25)  # local error O(h^(order + 1))


def test_consistency_training_with_two_scales_regresses_sigma_max_onto_the_data():
  """CT with N = 2 and mu = 0: the only pair is (sigma_max, sigma_min) and the target f(x + sigma_min z; sigma_min) =
  x + sigma_min z by the boundary condition, i.e. denoising regression from sigma_max (spec §11.6.6)."""
  net = mlp({"name": "consistency", "sigma_data": 0.5, "sigma_min": 0.002})
  params = {"model": net.init(jax.random.key(0))}
  objective = Consistency(groups={"model": type("G", (), {"network": net})}, curriculum="fixed", scales=2,
                          index_sampling="uniform", weighting="uniform", distance="l2", sigma_max=80.0)
  x0 = jax.random.normal(jax.random.key(1), (32, 2))
  rng = jax.random.key(2)
  loss, _ = objective.loss("model", params, {}, None, {"x": x0}, rng, jnp.asarray(0))
  # Reconstruct the noise the loss drew: every noised point is x0 + 80 z; the regression target is x0 + 0.002 z.
  _, k_noise, _ = jax.random.split(rng, 3)
  z = jax.random.normal(k_noise, x0.shape)
  expected = jnp.mean((net.denoise(params["model"], x0 + 80.0 * z, 80.0) - (x0 + 0.002 * z)) ** 2)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


# ----- progressive distillation ----------------------------------------------------------------------------------


def two_ddim_steps_closed_form(z, sigmas, mu, std):
  """Two DDIM steps of the exact Gaussian denoiser, as the linear map x -> a x + (1 - a) mu of each step (float64)."""
  x = np.asarray(z, np.float64)
  for s, s_next in zip(sigmas[:-1], sigmas[1:]):
    c = std**2 / (std**2 + s**2)  # D(x) = mu + c (x - mu)
    r = s_next / s
    a = r + (1.0 - r) * c
    x = a * x + (1.0 - a) * mu
  return x


def test_progressive_target_makes_one_student_step_equal_two_teacher_ddim_steps_on_a_gaussian():
  mu, std = np.array([0.5, -1.0]), 0.8
  objective = ProgressiveDistillation(groups={}, teacher_network=AnalyticNetwork(analytic.gaussian_denoiser(mu, std)),
                                      student_steps=4)
  student_grid, teacher_grid = objective.grids()
  np.testing.assert_allclose(teacher_grid[::2], student_grid, rtol=1e-6)
  z = np.random.default_rng(0).normal(size=(16, 2)) * 5.0
  for i in range(4):
    s, s_mid, s_next = student_grid[i], teacher_grid[2 * i + 1], student_grid[i + 1]
    z_next = objective.teacher_two_steps(None, jnp.asarray(z, jnp.float32), s, s_mid, s_next, None)
    np.testing.assert_allclose(z_next, two_ddim_steps_closed_form(z, [s, s_mid, s_next], mu, std), rtol=2e-5,
                               atol=2e-4)
    target = ddim_target(jnp.asarray(z, jnp.float32), z_next, s, s_next)
    np.testing.assert_allclose(ddim_step(target, jnp.asarray(z, jnp.float32), s, s_next), z_next, rtol=1e-4,
                               atol=5e-4)


@pytest.mark.parametrize("student_steps", [1, 2, 8])
def test_progressive_target_is_the_point_for_a_single_point_dataset(student_steps):
  point = np.array([0.7, -0.2])
  objective = ProgressiveDistillation(groups={}, teacher_network=AnalyticNetwork(
      analytic.empirical_denoiser(point[None])), student_steps=student_steps)
  student_grid, teacher_grid = objective.grids()
  z = jnp.asarray(np.random.default_rng(1).normal(size=(8, 2)) * 3.0, jnp.float32)
  for i in range(student_steps):
    z_next = objective.teacher_two_steps(None, z, student_grid[i], teacher_grid[2 * i + 1], student_grid[i + 1], None)
    np.testing.assert_allclose(ddim_target(z, z_next, student_grid[i], student_grid[i + 1]),
                               np.broadcast_to(point, z.shape), atol=2e-4)


# ----- BOOT ------------------------------------------------------------------------------------------------------


def exact_signal(eps, sigma_max, sigma, mu, std):
  """The signal y_sigma = x_sigma - sigma eps of the exact Gaussian trajectory from x = sigma_max eps."""
  return gaussian_pf_ode(sigma_max * eps, sigma_max, sigma, mu, std) - sigma * eps


def test_boot_bootstrap_target_is_exact_for_a_point_mass_and_second_order_for_a_gaussian():
  eps = np.random.default_rng(2).normal(size=(32, 1))
  with jax.enable_x64(True):
    # A point mass (std = 0): the teacher's DDIM step is exact, so is the bootstrapped signal, for any step size.
    point = AnalyticNetwork(analytic.gaussian_denoiser(0.4, 0.0)).denoise
    y = exact_signal(eps, 20.0, 5.0, 0.4, 0.0)
    target, delta = bootstrap_target(lambda x, s: point(None, x, s), jnp.asarray(y), jnp.asarray(eps), 5.0, 0.5)
    np.testing.assert_allclose(target, exact_signal(eps, 20.0, 0.5, 0.4, 0.0), atol=1e-12)
    np.testing.assert_allclose(delta, 0.9)
    # A Gaussian: one bootstrapped step from the exact signal is off by O(h^2).
    gauss = AnalyticNetwork(analytic.gaussian_denoiser(0.4, 0.6)).denoise
    errors = []
    for h in (0.2, 0.1, 0.05):
      y = exact_signal(eps, 20.0, 1.0, 0.4, 0.6)
      target, _ = bootstrap_target(lambda x, s: gauss(None, x, s), jnp.asarray(y), jnp.asarray(eps), 1.0, 1.0 - h)
      errors.append(np.abs(np.asarray(target) - exact_signal(eps, 20.0, 1.0 - h, 0.4, 0.6)).max())
  np.testing.assert_allclose(np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:])), 2.0, atol=0.2)


def test_boot_student_samples_its_signal_at_level_zero_in_one_evaluation():
  net = mlp({"name": "signal", "sigma_data": 0.5, "sigma_min": 0.002})
  params = random_params(net)
  z = jax.random.normal(jax.random.key(1), (16, 2))
  np.testing.assert_allclose(net.denoise(params, 20.0 * z, 20.0), signal(net, params, z, 0.0), rtol=1e-6)
  assert not np.allclose(signal(net, params, z, 5.0), signal(net, params, z, 0.0))


def test_boot_loss_vanishes_at_the_exact_signal_of_a_point_mass():
  """For a point mass the exact signal is constant (y = the point at every level) and a student equal to it has
  zero bootstrap and boundary losses."""

  class PointStudent:
    model_kwargs = {}
    parameterization = diffusion.SignalParameterization(sigma_data=1.0)

    def raw(self, params, x_in, c_noise, cond=None, **kwargs):
      return jnp.broadcast_to(jnp.asarray([0.4, -0.3]), x_in.shape)

  objective = Boot(groups={"model": type("G", (), {"network": PointStudent()})}, teacher_network=AnalyticNetwork(
      analytic.empirical_denoiser(np.array([[0.4, -0.3]]))), levels=8, sigma_max=20.0)
  loss, metrics = objective.loss("model", {"model": None}, {}, None, {"x": jnp.zeros((64, 2))}, jax.random.key(0), 0)
  assert float(loss) < 1e-10 and float(metrics["boundary"]) < 1e-10


# ----- resume, pipelines, export -----------------------------------------------------------------------------------


def tiny_objective_config(kind: str, teacher_bundle: str, steps: int) -> ml_collections.ConfigDict:
  """configs/tiny.py turned into an 8-step stage of `kind`, stopped after `steps` (a resumable change)."""
  c = tiny.get_config()
  c.teacher.bundle = teacher_bundle
  if kind == "consistency":  # with an EMA target (the aux state) and the CT curriculum
    c = common.consistency_stage(c, 8, 1e-3, 20.0, (20.0, 1.0), curriculum="ct", s0=2, s1=10, mu0=0.9,
                                 index_sampling="uniform", weighting="uniform", distance="l2")
  elif kind == "progressive":
    c = common.progressive_stage(c, 2, 8, 1e-3)
  else:
    c.parameterization = ml_collections.ConfigDict(dict(name="edm", sigma_data=0.5))
    c = common.boot_stage(c, 8, 1e-3, 20.0, levels=4)
  c.train.update(num_steps=steps, ckpt_every=4, log_every=4)
  return c


def leaves(state) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  return {jax.tree_util.keystr(p): np.array(jax.device_get(x)) for p, x in flat}


@pytest.mark.parametrize("kind", ["consistency", "progressive", "boot"])
def test_trajectory_objectives_resume_bit_identically(kind, tiny_teacher_bundle, tmp_path):
  straight = leaves(run.train(tiny_objective_config(kind, tiny_teacher_bundle, 8), str(tmp_path / "straight")))
  run.train(tiny_objective_config(kind, tiny_teacher_bundle, 4), str(tmp_path / "resumed"))
  resumed = leaves(run.train(tiny_objective_config(kind, tiny_teacher_bundle, 8), str(tmp_path / "resumed")))
  assert straight.keys() == resumed.keys()
  for k in straight:
    np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
  if kind == "consistency":
    assert any("target" in k for k in resumed)


CONTRACT_BUDGETS = {  # the contract's command with small budgets (stage -> training steps)
    "toy2d_consistency": {"teacher": 20, "distill": 4},
    "toy2d_progressive": {"teacher": 20, **{f"pd{n}": 2 for n in (32, 16, 8, 4, 2, 1)}},
    "toy2d_boot": {"teacher": 20, "distill": 4},
}


@pytest.mark.parametrize("name", sorted(CONTRACT_BUDGETS))
def test_toy2d_trajectory_contract(name, tmp_path):
  """`distill train --config configs/<name>.py --workdir W --config.data.source=npz:P.npz` runs the whole pipeline
  (teacher included), `distill export` writes a bundle and `distill sample --steps 1` samples it in one network
  evaluation."""
  from distill import cli
  import samplers

  npz = tmp_path / "P.npz"
  np.savez(npz, points=np.random.default_rng(0).normal(size=(500, 2)) * [1.0, 0.3])
  workdir, bundle, out = str(tmp_path / "W"), str(tmp_path / "B"), str(tmp_path / "S.npz")
  budgets = [f"--config.stages.{stage}.config.train.{key}={n if key == 'num_steps' else 0}"
             for stage, n in CONTRACT_BUDGETS[name].items() for key in ("num_steps", "eval_every")]
  config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", f"{name}.py")
  assert cli.main(["train", f"--config={config}", f"--workdir={workdir}", f"--config.data.source=npz:{npz}",
                   "--config.mesh.data=1", *budgets]) == 0
  assert cli.main(["export", f"--workdir={workdir}", f"--out={bundle}"]) == 0
  assert cli.main(["sample", f"--sampler={bundle}", "--num=64", f"--out={out}", "--steps=1"]) == 0
  assert samplers.load(bundle).nfe(1) == 1
  with np.load(out) as f:
    assert f["samples"].shape == (64, 2) and np.all(np.isfinite(f["samples"]))


@pytest.mark.parametrize("name", ["toy2d_consistency", "toy2d_progressive", "toy2d_boot", "mnist_consistency",
                                  "mnist_progressive", "mnist_boot"])
def test_trajectory_configs_build_their_objectives_and_sample_in_one_step(name):
  """Every stage after the teacher builds its objective from the config alone (no unknown keys, the student's
  parameterisation and initialisation match its teacher), and the last stage's sampler takes one network evaluation
  at --steps 1."""
  import importlib
  import types

  from distill import objectives
  from distill.data import DataSpec
  from distill.networks import network_from_config
  from distill.pipeline_config import validate
  from samplers.generator import Generator

  config = importlib.import_module(f"configs.{name}").get_config()
  validate(config)
  spec = DataSpec("points", (2,), 0, (-10.0, 10.0)) if name.startswith("toy2d") else DataSpec(
      "images", (28, 28, 1), 0, (-1.0, 1.0))
  stages = [config.stages[s] for s in config.pipeline.stages]
  teacher_config = stages[0].config
  teacher = types.SimpleNamespace(
      network=network_from_config(teacher_config.model, teacher_config.parameterization, spec), bundle_meta={})
  for stage in stages[1:]:
    objective = objectives.build(stage.config, spec, teacher)
    assert type(objective).__name__ == {"consistency": "Consistency", "progressive": "ProgressiveDistillation",
                                        "boot": "Boot"}[stage.config.objective.name]
  network = objective.groups[objective.sample_group].network
  assert Generator(network, spec.shape, stages[-1].config.sampler).nfe(1) == 1

"""OFTSR (spec reflow_trajectory_family.md §5): degradations and sources, the bootstrapped average-velocity target
against the closed-form flow of a Gaussian, the loss at the exact student of a point mass, bit-identical resume, the
one-command 2-D pipeline with `distill restore`, and clear errors for misuse."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, tiny
from distill import api, run
from distill.errors import UserError
from distill.objectives.restoration import OFTSR, average_velocity_target, rk2_velocity
from distill.restoration import Degradation, psnr


def test_degradations_measure_lift_and_perturb_as_documented():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 4, 6, 2)), jnp.float32)
  pool = Degradation("avgpool:2", sigma_y=0.0, sigma_p=0.0)
  y = pool.measure(x, jax.random.key(0))
  np.testing.assert_allclose(y[:, 1, 2], x[:, 2:4, 4:6].mean(axis=(1, 2)), rtol=1e-6)
  constant = jnp.full((2, 4, 6, 1), 0.3)  # bicubic lifting reproduces a constant image exactly
  np.testing.assert_allclose(pool.observe(constant, jax.random.key(0)), constant, atol=1e-6)
  np.testing.assert_array_equal(pool.source(y, jax.random.key(1)), y)  # sigma_p = 0: the source is y~ itself
  grid = Degradation("quantize:0.5", 0.0, 0.6)
  points = jnp.array([[0.1, -0.1], [0.74, 1.26]])
  np.testing.assert_allclose(grid.observe(points, jax.random.key(0)), [[0.25, -0.25], [0.75, 1.25]])
  xi = jax.random.normal(jax.random.key(2), points.shape)
  np.testing.assert_allclose(grid.source(points, jax.random.key(2)), 0.8 * points + 0.6 * xi, rtol=1e-6)
  noisy = Degradation("identity", sigma_y=0.1, sigma_p=0.0)
  assert 0.08 < float(jnp.std(noisy.observe(jnp.zeros((4000, 2)), jax.random.key(3)))) < 0.12
  with pytest.raises(ValueError, match="unknown degradation operator 'blur:2'"):
    Degradation("blur:2")
  with pytest.raises(ValueError, match="divide by 3"):
    Degradation("avgpool:3").check_shape((28, 28, 1))
  np.testing.assert_allclose(psnr(np.zeros((1, 4)), np.full((1, 4), 0.2)), [10 * np.log10(4 / 0.04)])


def test_rk2_velocity_integrates_a_time_quadratic_trajectory_exactly():
  velocity = lambda x, t: jnp.broadcast_to((1.0 + 2.0 * t)[:, None], x.shape)  # x(t) = x + t + t^2
  x, t, h = jnp.zeros((3, 2)), jnp.array([0.0, 0.3, 0.6]), jnp.array([0.1, 0.2, 0.05])
  for r in (0.5, 1.0, 2.0 / 3.0):  # midpoint, Heun, Ralston: every consistent 2-stage rule is exact here
    step = x + h[:, None] * rk2_velocity(velocity, x, t, h, r)
    exact = (t + h + (t + h) ** 2) - (t + t**2)
    np.testing.assert_allclose(step, jnp.broadcast_to(exact[:, None], x.shape), rtol=1e-5)


def gaussian_flow(m: float, s: float):
  """The RF flow from x0 ~ N(0, 1) to N(m, s^2) (independent coupling, per coordinate): x_t = t m + sd_t x0 with sd_t
  = sqrt((1 - t)^2 + t^2 s^2); returns (velocity(x, t), average velocity u(x0, t) = (x_t - x0) / t)."""
  sd = lambda t: jnp.sqrt((1 - t) ** 2 + t**2 * s**2)
  velocity = lambda x, t: m + ((t * s**2 - (1 - t)) / sd(t) ** 2)[:, None] * (x - t[:, None] * m)
  average = lambda x0, t: m + ((sd(t) - 1.0) / t)[:, None] * x0
  return velocity, average


def test_average_velocity_target_is_the_next_average_velocity_of_a_gaussian_flow():
  """From the exact average velocity at t, one teacher RK2 step gives the exact average velocity at s = t + 0.05 up
  to the step's O(h^3) error, far below how much the average velocity itself moves over the step."""
  velocity, average = gaussian_flow(m=1.5, s=0.3)
  x0 = jax.random.normal(jax.random.key(0), (256, 2))
  t = jnp.linspace(0.01, 0.94, 256)
  s = t + 0.05
  target, _ = average_velocity_target(velocity, x0, average(x0, t), t, s, 0.5)
  error = float(jnp.max(jnp.abs(target - average(x0, s))))
  moved = float(jnp.max(jnp.abs(average(x0, t) - average(x0, s))))
  assert error < 2e-4 and error < moved / 100, (error, moved)


class Stub:
  """A 'network' with a given velocity(x, t) (no parameters)."""

  model_kwargs = {}

  def __init__(self, velocity):
    self._velocity = velocity

  def velocity(self, params, x, t, cond=None, **kwargs):
    return self._velocity(x, t)


def test_oftsr_loss_vanishes_at_the_exact_student_of_a_point_mass_but_its_boundary_term():
  """Data = the point p: the teacher's trajectories are straight lines x0 -> p, the exact student u(x0, t) = p - x0
  at every t, so the distillation and alignment terms vanish; the boundary term compares with v(x0, t_min) =
  (p - x0) / (1 - t_min), as the official code does."""
  p = jnp.array([0.7, -0.4])
  teacher = Stub(lambda x, t: (p - x) / (1.0 - t)[:, None])
  student = Stub(lambda x, t: jnp.broadcast_to(p - x, x.shape))
  objective = OFTSR(groups={"model": type("G", (), {"network": student})()}, teacher_network=teacher,
                    degradation=Degradation("identity", 0.0, 1.0))
  batch = {"x": jnp.broadcast_to(p, (512, 2))}
  _, metrics = objective.loss("model", {"model": None}, {}, None, batch, jax.random.key(0), 0)
  assert float(metrics["distil"]) < 1e-10 and float(metrics["align"]) < 1e-10
  k_problem = jax.random.split(jax.random.key(0), 3)[0]  # the loss's key layout: problem, times, dropout
  x0 = Degradation("identity", 0.0, 1.0).source(batch["x"], jax.random.split(k_problem)[1])  # sigma_p = 1: noise
  expected = float(jnp.mean((p - x0) ** 2)) * (1.0 - 1.0 / 0.99) ** 2
  np.testing.assert_allclose(float(metrics["boundary"]), expected, rtol=1e-4)


# ----- the trained path: resume, the 2-D pipeline, errors ----------------------------------------------------------


def restoration_config(steps: int, teacher: str = ""):
  """configs/tiny.py as a restoration teacher (quantize:0.5), or with `teacher` its OFTSR student."""
  c = common.restoration_teacher(tiny.get_config(), "quantize:0.5", 0.0, 0.2, steps=8)
  if teacher:
    c = common.oftsr_stage(c, 8, 1e-3)
    c.teacher.bundle = teacher
  c.train.update(num_steps=steps, ckpt_every=4, log_every=4)
  return c


@pytest.fixture(scope="module")
def restoration_teacher(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("restoration_teacher"))
  run.train(restoration_config(8), workdir)
  return api.export(workdir)


def leaves(state) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  return {jax.tree_util.keystr(p): np.array(jax.device_get(x)) for p, x in flat}


def test_oftsr_student_resumes_bit_identically(restoration_teacher, tmp_path):
  straight = leaves(run.train(restoration_config(8, restoration_teacher), str(tmp_path / "straight")))
  run.train(restoration_config(4, restoration_teacher), str(tmp_path / "resumed"))
  resumed = leaves(run.train(restoration_config(8, restoration_teacher), str(tmp_path / "resumed")))
  assert straight.keys() == resumed.keys()
  for k in straight:
    np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_toy2d_oftsr_pipeline_restores_from_the_command_line(tmp_path, capsys):
  """`distill train --config configs/toy2d_oftsr.py` trains teacher and student; `distill restore` scores both
  bundles (the student at any knob, in one evaluation); sampling from noise is refused with a clear error."""
  from distill import cli
  import samplers

  npz = tmp_path / "P.npz"
  np.savez(npz, points=np.random.default_rng(0).normal(size=(500, 2)) * [1.0, 0.3])
  workdir, out = str(tmp_path / "W"), str(tmp_path / "R.npz")
  config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "toy2d_oftsr.py")
  budgets = [f"--config.stages.{stage}.config.train.num_steps={n}" for stage, n in (("teacher", 20), ("distill", 4))]
  assert cli.main(["train", f"--config={config}", f"--workdir={workdir}", f"--config.data.source=npz:{npz}",
                   "--config.mesh.data=1", *budgets]) == 0
  student, teacher = os.path.join(workdir, "distill", "export"), os.path.join(workdir, "teacher", "export")
  capsys.readouterr()
  assert cli.main(["restore", f"--sampler={student}", f"--data=npz:{npz}", "--num=64", "--knob=0.5",
                   f"--out={out}"]) == 0
  assert "PSNR" in capsys.readouterr().out
  with np.load(out) as f:
    assert f["restored"].shape == (64, 2) and np.all(np.isfinite(f["restored"]))
  assert cli.main(["restore", f"--sampler={teacher}", f"--data=npz:{npz}", "--num=64", "--steps=4"]) == 0
  assert cli.main(["restore", f"--sampler={student}", f"--data=npz:{npz}", "--steps=4"]) == 1
  assert "restores in one step" in capsys.readouterr().err
  assert cli.main(["sample", f"--sampler={student}", "--num=4", f"--out={tmp_path / 'S.npz'}"]) == 1
  assert "is a restoration model" in capsys.readouterr().err
  meta = samplers.load(student).meta["restoration"]
  assert meta == {"operator": "quantize:0.5", "sigma_y": 0.0, "sigma_p": 0.2, "sampler": "one_step"}


def test_restoration_misconfigurations_are_clear_errors(restoration_teacher, tiny_teacher_bundle):
  c = restoration_config(4)
  c.train.eval_every = 2
  with pytest.raises(UserError, match="restoration model"):
    run.build_run(c)
  c = restoration_config(4)
  c.model.source_conditional = False
  with pytest.raises(UserError, match="source_conditional=True"):
    run.build_run(c)
  c = restoration_config(4, teacher=restoration_teacher)
  c.teacher.bundle = ""
  with pytest.raises(UserError, match="restoration teacher"):
    run.build_run(c)
  with pytest.raises(UserError, match="samples from noise"):
    api.load(tiny_teacher_bundle).restore(jax.random.key(0), np.zeros((2, 2)))
  from distill.networks import Network

  unet = Network.create({"name": "unet", "resolution": 8, "in_channels": 1, "channels": (4,), "num_blocks": 1,
                         "source_channels": 1}, {"name": "velocity"})
  params = unet.init(jax.random.key(0))
  x = jnp.zeros((2, 8, 8, 1))
  assert unet.velocity(params, x, jnp.full((2,), 0.5), x).shape == x.shape
  with pytest.raises(ValueError, match="source-conditioned"):
    unet.velocity(params, x, jnp.full((2,), 0.5))


@pytest.mark.parametrize("name", ["toy2d_oftsr", "mnist_oftsr"])
def test_oftsr_configs_build_a_restoration_teacher_and_its_student(name):
  """Each stage builds its objective from the config alone; the student takes the teacher's degradation and
  architecture (it starts from the teacher's weights)."""
  import importlib
  import types

  from distill import objectives
  from distill.data import DataSpec
  from distill.pipeline_config import validate

  config = importlib.import_module(f"configs.{name}").get_config()
  validate(config)
  spec = DataSpec("points", (2,), 0, (-10.0, 10.0)) if name.startswith("toy2d") else DataSpec(
      "images", (28, 28, 1), 0, (-1.0, 1.0))
  teacher_objective = objectives.build(config.stages.teacher.config, spec)
  network = teacher_objective.groups["model"].network
  assert dict(network.model_kwargs)["source_channels"] == spec.shape[-1]
  meta = {"restoration": teacher_objective.degradation.to_dict() | {"sampler": "flow"}}
  student = objectives.build(config.stages.distill.config, spec, types.SimpleNamespace(network=network,
                                                                                      bundle_meta=meta))
  assert student.degradation == teacher_objective.degradation and student.groups["model"].init == "teacher"
  assert config.stages.distill.config.sampler.steps == 1


def test_restorations_do_not_depend_on_the_batch(restoration_teacher):
  """Example i draws its measurement and source noise from fold_in(key, i): restoring a slice with its first_index
  gives the same rows as restoring the whole batch."""
  bundle = api.load(restoration_teacher)
  x = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32)
  key = jax.random.key(3)
  observed = bundle.observe(key, x)
  np.testing.assert_array_equal(bundle.observe(key, x[5:], first_index=5), observed[5:])
  whole = bundle.restore(key, observed, steps=3)
  np.testing.assert_allclose(bundle.restore(key, observed[5:], steps=3, first_index=5), whole[5:], atol=1e-6)
  assert not np.allclose(whole, bundle.restore(jax.random.key(4), observed, steps=3))

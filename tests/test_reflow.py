"""Reflow family: pair stores (reproducible, resumable, refusing foreign stores), the reflow objectives' mathematics
(time and annealing schedules, the one-step map, the flow-guided target) and the one-command pipeline."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import samplers
from configs import common, tiny
from distill import api, cli, pairs, run
from distill.errors import UserError
from samplers.generator import Generator
from distill.objectives import reflow
from distill.analytic import empirical_denoiser, gaussian_mixture_denoiser
from distill.evaluation.straightness import straightness
from distill.teacher import Teacher, load_teacher
from flow_stubs import AnalyticNetwork, ConstantFlow


@pytest.fixture(scope="module")
def teacher_bundle(tiny_teacher_bundle):
  return tiny_teacher_bundle


def _teacher(bundle):
  return load_teacher(ml_collections.ConfigDict(dict(bundle=bundle, workdir="", dtype="float32")))


def _shards(path):
  return sorted(f for f in os.listdir(path) if f.startswith("shard_"))


def test_pairs_are_reproducible_resumable_and_complete(teacher_bundle, tmp_path):
  teacher = _teacher(teacher_bundle)
  out = str(tmp_path / "pairs")
  meta = pairs.generate_pairs(out, teacher, num=10, seed=3, shard_size=4, steps=4, log=lambda s: None)
  assert _shards(out) == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
  assert meta["nfe"] == 4 and meta["teacher"]["checksum"] == teacher.bundle_meta["checksum"]
  _, first = pairs.load_pairs(out)
  np.testing.assert_array_equal(first["index"], np.arange(10))

  # Pair i starts from the sampler's noise for sample i and ends where the sampler ends.
  keys = samplers.sample_keys(jax.random.key(3), np.arange(10))
  np.testing.assert_array_equal(first["noise"], np.asarray(samplers.initial_noise(keys, (2,))))
  exported = samplers.load(teacher_bundle)
  np.testing.assert_allclose(first["x"], exported.sample(jax.random.key(3), 10, steps=4), atol=1e-5)

  # Killed after shard 0: rerunning regenerates exactly the missing shards, bit for bit.
  os.remove(os.path.join(out, "shard_00001.npz"))
  os.remove(os.path.join(out, "shard_00002.npz"))
  with pytest.raises(UserError, match="incomplete"):
    pairs.load_pairs(out)
  pairs.generate_pairs(out, teacher, num=10, seed=3, shard_size=4, steps=4, log=lambda s: None)
  _, again = pairs.load_pairs(out)
  for k in first:
    np.testing.assert_array_equal(again[k], first[k])

  # Another shard size gives the same pairs (up to float rounding across batch shapes).
  other = str(tmp_path / "other")
  pairs.generate_pairs(other, teacher, num=10, seed=3, shard_size=10, steps=4, log=lambda s: None)
  np.testing.assert_allclose(pairs.load_pairs(other)[1]["x"], first["x"], atol=1e-5)

  with pytest.raises(UserError, match=r"seed \(3 -> 4\)"):
    pairs.generate_pairs(out, teacher, num=10, seed=4, shard_size=4, steps=4, log=lambda s: None)


def test_pair_source_and_foreign_teacher(teacher_bundle, tmp_path):
  out = str(tmp_path / "pairs")
  pairs.generate_pairs(out, _teacher(teacher_bundle), num=32, seed=0, shard_size=16, steps=2, log=lambda s: None)
  config = tiny.get_config()
  config.data.source = f"pairs:{out}"
  config.data.batch_size = 8
  config.objective = common.reflow_objective()
  config.teacher.bundle = teacher_bundle
  built = run.build_run(config)
  batch = built.source.global_batch(0, 8)
  assert set(batch) == {"x", "noise"} and batch["noise"].shape == (8, 2)

  # A student that is a copy of the teacher: the store must come from that teacher.
  other_dir = str(tmp_path / "other_teacher")
  other = tiny.get_config()
  other.seed = 1
  other.train.num_steps = 2
  run.train(other, other_dir)
  config.teacher.bundle = api.export(other_dir)
  with pytest.raises(UserError, match="was made by teacher"):
    run.build_run(config)


def test_annealing_schedules_at_their_end_points():
  for name in ("linear", "cosine"):
    assert float(reflow.annealing_beta(name, 0, 100)) == pytest.approx(1.0)
    assert float(reflow.annealing_beta(name, 100, 100)) == pytest.approx(0.0, abs=1e-7)
    assert float(reflow.annealing_beta(name, 250, 100)) == pytest.approx(0.0, abs=1e-7)
  assert float(reflow.annealing_beta("linear", 25, 100)) == pytest.approx(0.75)
  assert float(reflow.annealing_beta("cosine", 50, 100)) == pytest.approx(0.5)
  assert float(reflow.annealing_beta("exp", 0, 100)) == pytest.approx(1.0)
  assert float(reflow.annealing_beta("exp", 100, 100)) == pytest.approx(np.exp(-1.0))
  assert float(reflow.annealing_beta("constant", 7, 100, 0.3)) == pytest.approx(0.3)
  assert float(reflow.annealing_beta("none", 7, 100)) == 0.0
  with pytest.raises(ValueError, match="unknown beta schedule"):
    reflow.annealing_beta("sigmoid", 0, 10)


def test_time_schedules():
  key = jax.random.key(0)
  assert np.all(np.asarray(reflow.sample_time(key, "t0", 5, 1e-3)) == np.float32(1e-3))
  t = np.asarray(reflow.sample_time(key, "k", 2000, 1e-3, k=4))
  np.testing.assert_allclose(np.unique(t), 1e-3 + np.arange(4) * (1 - 1e-3) / 4, rtol=1e-6)
  t = np.asarray(reflow.sample_time(key, "uniform", 2000, 1e-3))
  assert t.min() >= 1e-3 and t.max() <= 1.0 and abs(t.mean() - 0.5) < 0.02


def test_distances():
  a, b = jnp.ones((2, 4)), jnp.zeros((2, 4))
  np.testing.assert_allclose(reflow.distance(a, b, "l2"), [1.0, 1.0])
  c = 0.1 * 2.0  # huber_c * sqrt(dim)
  np.testing.assert_allclose(reflow.distance(a, b, "pseudo_huber", 0.1), [np.sqrt(4 + c**2) - c] * 2, rtol=1e-6)


def test_one_step_map_is_the_one_step_euler_sampler(teacher_bundle):
  exported = samplers.load(teacher_bundle)
  net, params = exported.network, exported.params
  generator = Generator(net, (2,), {**exported.meta["sampler"], "steps": 1})
  x, noise, nfe = generator.generate_with_noise(params, jax.random.key(0), 16, steps=1)
  assert np.all(nfe == 1)
  x1_hat, _ = reflow.one_step(net, params, jnp.asarray(noise), 1e-3)
  np.testing.assert_allclose(np.asarray(x1_hat), x, rtol=1e-5, atol=1e-5)


def test_flow_guided_target_of_a_straight_guide():
  """A constant-velocity guide c makes the 2-step target x_eps + (1 - eps) c for any split time, so a student that
  is the same flow has zero guide loss, and its distill loss is its distance to the pairs."""
  c = jnp.array([0.5, -2.0])
  guide = ConstantFlow(c)
  objective = reflow.FlowGuidedDistillation(groups={"model": type("G", (), {"network": guide})()},
                                            guide_network=guide, guide_first_leg="guide")
  z = jax.random.normal(jax.random.key(1), (6, 2))
  x1 = (1 - 1e-3) * z + (1 - 1e-3) * c  # exactly the straight flow's one-step endpoints
  loss, metrics = objective.loss("model", {"model": None}, {}, None, {"noise": z, "x": x1}, jax.random.key(2), 0)
  assert float(metrics["distill"]) == pytest.approx(0.0, abs=1e-10)
  assert float(metrics["guide"]) == pytest.approx(0.0, abs=1e-10)
  student_first = objective.__class__(**{**objective.__dict__, "guide_first_leg": "student"})
  assert float(student_first.loss("model", {"model": None}, {}, None, {"noise": z, "x": x1}, jax.random.key(2),
                                   0)[0]) == pytest.approx(0.0, abs=1e-10)


def test_pipeline_in_one_command_resumes_and_exports_a_one_step_student(tmp_path, capsys):
  workdir = str(tmp_path / "w")
  run_config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tiny_reflow.py")
  one_device = "--config.mesh.data=1"  # the stages' steps compile faster than for 8 fake CPU devices
  assert cli.main(["train", f"--config={run_config}", f"--workdir={workdir}", one_device]) == 0
  records = json.load(open(os.path.join(workdir, "pipeline.json")))
  assert list(records) == ["teacher", "pairs", "reflow", "pairs_2rf", "distill"]
  assert records["pairs"]["teacher_checksum"] == records["teacher"]["checksum"]
  assert records["pairs_2rf"]["teacher_checksum"] == records["reflow"]["checksum"]
  assert records["pairs"]["nfe"] == 8 and records["distill"]["objective"] == "reflow"

  bundle = str(tmp_path / "student")
  assert cli.main(["export", f"--workdir={workdir}", f"--out={bundle}"]) == 0
  student = samplers.load(bundle)
  assert student.nfe() == 1 and student.meta["checksum"] == records["distill"]["checksum"]
  assert student.sample(jax.random.key(0), 5).shape == (5, 2)

  out_json = str(tmp_path / "eval.json")
  assert cli.main(["eval", f"--sampler={records['reflow']['bundle']}", "--steps=1", "--num=256", "--straightness",
                   f"--json={out_json}"]) == 0
  report = json.load(open(out_json))
  assert report["straightness"] >= 0 and report["one_step_error"] >= 0 and report["rows"][0]["nfe"] == 1

  capsys.readouterr()
  assert cli.main(["train", f"--config={run_config}", f"--workdir={workdir}", one_device]) == 0
  assert capsys.readouterr().out.count("already done") == 5

  # A finished teacher is reused with --config.teacher.workdir (no teacher stage is trained).
  reuse = str(tmp_path / "reuse")
  shutil.rmtree(os.path.join(workdir, "distill", "export"))
  assert cli.main(["train", f"--config={run_config}", f"--workdir={reuse}",
                   f"--config.teacher.workdir={os.path.join(workdir, 'teacher')}", one_device]) == 0
  reused = json.load(open(os.path.join(reuse, "pipeline.json")))
  assert reused["teacher"]["kind"] == "external" and reused["teacher"]["checksum"] == records["teacher"]["checksum"]
  assert not os.path.exists(os.path.join(reuse, "teacher"))




def analytic_teacher(denoise, name: str, sampler: dict) -> Teacher:
  meta = {"checksum": name, "sampler": sampler, "model": {"name": name}, "parameterization": {},
          "data": {"kind": "points", "shape": [2], "num_classes": 0, "data_range": [-4.0, 4.0]}}
  return Teacher(network=AnalyticNetwork(denoise), params={}, bundle_meta=meta)


RK45 = {"solver": "rk45", "grid": "edm", "steps": 2, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}


def test_rk45_pairs_of_an_exact_teacher_land_on_the_data(tmp_path):
  """The exact flow of an empirical distribution maps noise onto its points (memorisation): adaptive pairs end
  on a data point, with per-pair NFE recorded."""
  points = np.random.default_rng(0).uniform(-2, 2, (16, 2)).astype(np.float32)
  teacher = analytic_teacher(empirical_denoiser(points), "empirical16", RK45)
  out = str(tmp_path / "pairs")
  meta = pairs.generate_pairs(out, teacher, num=64, seed=0, shard_size=32, log=lambda s: None)
  _, stored = pairs.load_pairs(out)
  nearest = np.min(np.linalg.norm(stored["x"][:, None] - points[None], axis=-1), axis=1)
  assert meta["nfe"] is None and nearest.max() < 1e-3
  assert stored["nfe"].min() >= 8 and len(np.unique(stored["nfe"])) > 1  # adaptive: differs per pair


def test_straightness_drops_after_one_reflow(tmp_path):
  """2-rectified flow on pairs of an exact 4-mode mixture flow: straighter paths and a smaller one-step error."""
  means = np.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]], np.float32)
  denoise = gaussian_mixture_denoiser(means, np.full(4, 0.3, np.float32), np.full(4, 0.25, np.float32))
  teacher = analytic_teacher(denoise, "gmm4", {"solver": "heun", "grid": "uniform_t", "steps": 50, "t_eps": 1e-3})
  store = str(tmp_path / "pairs")
  pairs.generate_pairs(store, teacher, num=8192, seed=0, shard_size=8192, log=lambda s: None)
  config = tiny.get_config()
  config.data.source, config.data.batch_size = f"pairs:{store}", 256
  config.model.update(width=128, depth=3, emb_dim=64)
  config.objective = common.reflow_objective(init="random")
  config.optim.update(learning_rate=2e-3, schedule="cosine", decay_steps=300)
  config.train.update(num_steps=300, ckpt_every=300, log_every=100)
  config.mesh.data = 1  # XLA's CPU all-reduce across 8 fake devices on 2 cores can stall at this model size
  workdir = str(tmp_path / "reflow")
  run.train(config, workdir)
  student = samplers.load(api.export(workdir))

  z = jax.random.normal(jax.random.key(1), (2048, 2))
  grid = np.linspace(1e-3, 1.0, 101)
  flows = {"teacher": samplers.rf_velocity(denoise),
           "2-RF": lambda x, t: student.network.velocity(student.params, x, jnp.full(x.shape[:1], t))}
  s, one_step_error = {}, {}
  for name, velocity in flows.items():
    s[name], z1 = straightness(velocity, z, grid)
    one_step = z + (1.0 - 1e-3) * velocity(z, 1e-3)
    one_step_error[name] = float(jnp.mean((one_step - z1) ** 2))
  print(f"straightness {s}, one-step error {one_step_error}")
  assert float(s["2-RF"]) < 0.25 * float(s["teacher"]), s
  assert one_step_error["2-RF"] < 0.25 * one_step_error["teacher"], one_step_error


def test_slimflow_pipeline_with_a_smaller_student(tmp_path):
  """Teacher -> pairs -> annealing reflow of a smaller student from scratch -> flow-guided distillation, on 2-D
  data at a tiny budget: every stage runs, the student is smaller, and the final model samples in one step."""
  from configs import tiny_reflow
  from distill import pipeline

  base = tiny_reflow.get_config()
  anneal = base.stages.reflow.config
  anneal.model.width = 16
  anneal.objective.update(beta_schedule="linear", beta_steps=10, init="random")
  guided = ml_collections.ConfigDict(anneal.to_dict())
  guided.sampler.steps = 1
  guided.objective = common.flow_guided_objective(distance="pseudo_huber")
  config = common.pipeline({"teacher": base.stages.teacher, "pairs": base.stages.pairs,
                            "anneal": common.train_stage(anneal, data_stage="pairs"),
                            "guided": common.train_stage(guided, data_stage="pairs", teacher_stage="anneal")},
                           "toy:moons")
  config.mesh.data = 1  # one device: the stages' steps compile faster than for 8 fake CPU devices
  workdir = str(tmp_path / "slim")
  records = pipeline.run_pipeline(config, workdir, log=lambda s: None)
  teacher, student = (samplers.load(records[name]["bundle"]) for name in ("teacher", "guided"))
  assert student.network.num_params() < teacher.network.num_params()
  assert student.nfe() == 1 and np.all(np.isfinite(student.sample(jax.random.key(0), 64)))
  rows = [json.loads(line) for line in open(os.path.join(workdir, "anneal", "metrics.jsonl"))]
  betas = [r["model/beta"] for r in rows if "model/beta" in r]  # mean beta over each logging interval
  assert betas[0] > 0.5 and betas[-1] == 0.0


def test_online_pairs_are_the_teachers_euler_solution(teacher_bundle):
  teacher = _teacher(teacher_bundle)
  objective = reflow.Reflow(groups={}, teacher_network=teacher.network, online=True, online_steps=5)
  z, x1 = objective.pairs({"x": jnp.zeros((6, 2))}, teacher.params, jax.random.key(4), None)
  sigmas = samplers.uniform_t_sigmas(5)
  expected = samplers.euler(lambda x, s, c: teacher.network.denoise(teacher.params, x, s, c), sigmas[0] * z, sigmas)
  np.testing.assert_allclose(np.asarray(x1), np.asarray(expected), rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(z), np.asarray(jax.random.normal(jax.random.key(4), (6, 2))))

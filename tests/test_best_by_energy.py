"""In-training selection on point data: eval.fid_features='energy' logs the energy distance to held-out points,
keeps the best checkpoint by it, and `distill export --best` exports that checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

import samplers
from configs import tiny
from distill import api, checkpointing, data as data_lib, run
from distill.evaluation.distances import TrainingEnergy, energy_distance, sliced_wasserstein2
from samplers.generator import Generator


@pytest.fixture(scope="module")
def energy_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("energy") / "w")
  config = tiny.get_config()
  config.mesh.data = 1
  config.eval.update(fid_every=5, fid_features="energy", fid_num=128)
  run.train(config, workdir)
  return workdir, config


def test_best_checkpoint_is_the_lowest_logged_energy(energy_run, tmp_path):
  workdir, _ = energy_run
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  energies = {r["step"]: r["eval/energy"] for r in rows if "eval/energy" in r}
  assert sorted(energies) == [5, 10, 15, 20] and all(v >= 0 for v in energies.values())
  best = json.load(open(os.path.join(workdir, checkpointing.BEST_FILE)))
  assert best["metric"] == "energy" and best["step"] == min(energies, key=energies.get)
  assert best["value"] == pytest.approx(energies[best["step"]])
  bundle = samplers.load(api.export(workdir, str(tmp_path / "best"), best=True))
  assert bundle.meta["provenance"]["step"] == best["step"] and bundle.meta["provenance"]["best_by"] == "energy"


def test_training_energy_is_the_energy_distance_to_held_out_points(energy_run):
  workdir, config = energy_run
  sampler = samplers.load(api.export(workdir, os.path.join(workdir, "export_last")))
  evaluator = TrainingEnergy(config.data.source, 64)
  generator = Generator(sampler.network, sampler.shape, sampler.meta["sampler"])
  key = jax.random.key(3)
  got = evaluator(generator, sampler.params, key)
  samples = np.asarray(generator.generate(sampler.params, key, 64), np.float64)
  assert got["energy"] == pytest.approx(energy_distance(samples, evaluator.reference), rel=1e-9)
  assert got["sw2"] == pytest.approx(sliced_wasserstein2(samples, evaluator.reference), rel=1e-9)
  training = np.asarray(data_lib.make_source(config.data.source, config.seed).global_batch(0, 64)["x"])
  assert not np.allclose(training, evaluator.reference), "reference points must not be the training batch"


def test_energy_selection_refuses_image_data(tmp_path):
  images = tmp_path / "images.npz"
  np.savez(images, images=np.zeros((4, 8, 8, 1), np.uint8))
  with pytest.raises(ValueError, match="needs point data"):
    TrainingEnergy(f"npz:{images}", 4)


def _pipeline(export: str, fid_every: int = 5):
  from configs import common

  stage = tiny.get_config()
  stage.mesh.data = 1
  stage.eval.update(fid_every=fid_every, fid_features="energy", fid_num=128)
  config = common.pipeline({"only": common.train_stage(stage, export=export)}, "toy:moons")
  config.mesh.data = 1
  return config


def test_a_pipeline_stage_may_export_its_best_checkpoint(tmp_path):
  from distill import pipeline

  workdir, config = str(tmp_path / "p"), _pipeline("best")
  records = pipeline.run_pipeline(config, workdir)
  best = json.load(open(os.path.join(workdir, "only", checkpointing.BEST_FILE)))
  provenance = samplers.load(records["only"]["bundle"]).meta["provenance"]
  assert provenance["best_by"] == "energy" and provenance["step"] == best["step"]
  again = samplers.load(api.export(workdir, str(tmp_path / "again"))).meta["provenance"]
  assert again["best_by"] == "energy" and again["step"] == best["step"], "`distill export` must follow the stage"


@pytest.mark.parametrize("export, fid_every, message", [("first", 5, "must be 'last' or 'best'"),
                                                        ("best", 0, "needs in-training evaluation")])
def test_bad_stage_export_is_refused_before_anything_runs(tmp_path, export, fid_every, message):
  from distill import pipeline
  from distill.errors import UserError

  with pytest.raises(UserError, match=message):
    pipeline.run_pipeline(_pipeline(export, fid_every), str(tmp_path / "p"))
  assert not os.path.exists(tmp_path / "p" / "only")


def test_no_best_is_kept_during_a_score_distillation_warm_up(tiny_teacher_bundle, tmp_path):
  """The generator is held (objective.generator_start) until step 8, then trained at a learning rate that makes it
  worse: the evaluation at step 5 is the lowest energy logged, yet the best is the lowest from step 10 on."""
  from configs import common

  workdir = str(tmp_path / "w")
  config = common.score_distillation_stage(tiny.get_config(), "sid", 20, 0.05, generator_start=8)
  config.teacher.bundle = tiny_teacher_bundle
  config.mesh.data = 1
  config.eval.update(fid_every=5, fid_features="energy", fid_num=128)
  run.train(config, workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  energies = {r["step"]: r["eval/energy"] for r in rows if "eval/energy" in r}
  assert sorted(energies) == [5, 10, 15, 20] and energies[5] < min(energies[s] for s in (10, 15, 20)), energies
  best = json.load(open(os.path.join(workdir, checkpointing.BEST_FILE)))
  assert best["step"] == min((10, 15, 20), key=energies.get)

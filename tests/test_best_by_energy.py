"""In-training selection on point data: eval.fid_features='energy' logs the energy distance to held-out points,
keeps the best checkpoint by it, and `distill export --best` exports that checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

import samplers
from configs import tiny
from distill import checkpointing, cli, data as data_lib, run
from distill.evaluation.distances import TrainingEnergy, energy_distance, sliced_wasserstein2
from distill.generation import Generator


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
  bundle = samplers.load(cli.export_workdir(workdir, str(tmp_path / "best"), best=True))
  assert bundle.meta["provenance"]["step"] == best["step"] and bundle.meta["provenance"]["best_by"] == "energy"


def test_training_energy_is_the_energy_distance_to_held_out_points(energy_run):
  workdir, config = energy_run
  sampler = samplers.load(cli.export_workdir(workdir, os.path.join(workdir, "export_last")))
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

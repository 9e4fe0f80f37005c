"""BOSS end to end on a small 2-D teacher: the Bellman grid beats the uniform one in jump cost and is exported as a
sampler; the straightening fine-tune brings K-step Euler on that grid closer to the teacher's fine trajectory."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import samplers
from configs import tiny, toy2d_boss
from distill import api, cli, run
from distill.errors import UserError


@pytest.fixture(scope="module")
def teacher_bundle(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teacher"))
  config = tiny.get_config()
  config.data.source = "toy:8gaussians"
  config.model.update(width=64, depth=2, emb_dim=32)
  config.train.update(num_steps=300, ckpt_every=300, log_every=100)
  config.mesh.data = 1
  run.train(config, workdir)
  return api.export(workdir)


def fine_endpoint_error(sampler, reference, noise):
  """Mean squared distance between K-step Euler on the sampler's grid and the reference model's 200-step path."""
  sigmas = {"grid": np.asarray(sampler.meta["sampler"]["sigmas"], np.float32),
            "reference": samplers.uniform_t_sigmas(200)}
  ends = {}
  for name, model in (("grid", sampler), ("reference", reference)):
    denoise = lambda x, s, c, model=model: model.network.denoise(model.params, x, s, c)
    ends[name] = samplers.euler(denoise, sigmas[name][0] * noise, sigmas[name])
  return float(jnp.mean((ends["grid"] - ends["reference"]) ** 2))


def test_bellman_grid_and_straightening(teacher_bundle, tmp_path, capsys):
  grid_path, bundle = str(tmp_path / "grid3.json"), str(tmp_path / "bellman3")
  assert cli.main(["boss", f"--sampler={teacher_bundle}", "--steps=3", f"--out={grid_path}", "--fine_steps=40",
                   "--num=256", f"--bundle_out={bundle}"]) == 0
  assert "jump cost" in capsys.readouterr().out
  grid = json.load(open(grid_path))
  assert grid["nodes"][0] == 0 and grid["nodes"][-1] == 40 and len(grid["nodes"]) == 4
  assert grid["cost"] <= grid["uniform_cost"]
  bellman = samplers.load(bundle)
  assert bellman.nfe() == 3 and bellman.meta["sampler"]["grid"] == "explicit"
  assert bellman.sample(jax.random.key(0), 5).shape == (5, 2)

  config = toy2d_boss.get_config()
  config.data.source = "toy:8gaussians"
  config.model.update(width=64, depth=2, emb_dim=32)
  config.data.batch_size = 256
  config.teacher.bundle = teacher_bundle
  config.objective.bellman_file = grid_path
  config.train.update(num_steps=300, eval_every=0, ckpt_every=300, log_every=100)
  config.mesh.data = 1
  workdir = str(tmp_path / "boss")
  run.train(config, workdir)
  tuned = samplers.load(api.export(workdir))
  assert tuned.meta["sampler"]["sigmas"] == pytest.approx(grid["sigmas"])

  teacher = samplers.load(teacher_bundle)
  z = jax.random.normal(jax.random.key(3), (2048, 2))
  before, after = fine_endpoint_error(bellman, teacher, z), fine_endpoint_error(tuned, teacher, z)
  print(f"3-step Euler on the Bellman grid vs the teacher's 200-step path: {before:.4g} -> {after:.4g}")
  assert after < 0.5 * before

  config.teacher.bundle = bundle  # same parameters but another file: checksums are of parameters, so allowed
  run.build_run(config)
  other = dict(grid, checksum="0" * 64)
  json.dump(other, open(grid_path, "w"))
  with pytest.raises(UserError, match="was computed for model"):
    run.build_run(config)
  os.remove(grid_path)
  with pytest.raises(UserError, match="distill boss"):
    run.build_run(config)

"""Sampler bundles: export from a workdir, load and sample in this and a fresh process, per-sample keys, integrity
checks, and an image (U-Net, class-conditional, guided) bundle."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import glob
import json
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import samplers
from configs import tiny
from distill import api, checkpointing, cli, run
from distill.errors import UserError
from samplers.generator import sigma_grid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def points_bundle(tmp_path_factory):
  """tiny trained 20 steps, exported: (workdir, bundle)."""
  root = tmp_path_factory.mktemp("points")
  workdir = str(root / "run")
  run.train(tiny.get_config(), workdir)
  out = api.export(workdir, str(root / "bundle"))
  assert out == str(root / "bundle")
  return workdir, out


def test_bundle_holds_the_checkpoint_ema_and_samples_in_a_fresh_process(points_bundle, tmp_path):
  workdir, bundle = points_bundle
  s = samplers.load(bundle)
  assert s.kind == "points" and s.shape == (2,) and s.num_classes == 0 and s.default_steps == 8
  assert s.meta["provenance"]["step"] == 20 and s.meta["provenance"]["data_source"] == "toy:moons"
  assert s.meta["nfe"] == s.nfe() == 8 and s.nfe(4) == 4

  # The bundle's parameters are exactly the EMA parameters of the latest checkpoint.
  config = ml_collections.ConfigDict(checkpointing.read_config(workdir))
  ckpts = checkpointing.Checkpoints(workdir)
  try:
    state = ckpts.restore(20, run.build_run(config).trainer.abstract_sharded_state())
  finally:
    ckpts.close()
  ema = jax.tree.map(np.asarray, nnx.to_pure_dict(state.ema["model"]))
  loaded = jax.tree.map(np.asarray, nnx.to_pure_dict(s.params))
  assert jax.tree.structure(ema) == jax.tree.structure(loaded)
  for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(loaded)):
    assert a.dtype == b.dtype and np.array_equal(a, b)
  assert s.meta["checksum"] == samplers.export.params_checksum(ema)

  x = s.sample(jax.random.key(0), 256, steps=4)
  assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (256, 2)
  assert np.all(np.isfinite(x)) and len(np.unique(x, axis=0)) == 256
  np.testing.assert_array_equal(x, s.sample(jax.random.key(0), 256, steps=4))  # deterministic
  assert not np.array_equal(x, s.sample(jax.random.key(1), 256, steps=4))

  # A fresh interpreter that imports nothing but samplers, jax and numpy (same 8 CPU devices) gets the same bits; on
  # 1 device the network runs on other per-device batch shapes, so there the samples agree to float rounding.
  code = ("import sys, samplers, jax, numpy\n"
          "s = samplers.load(sys.argv[1])\n"
          "numpy.savez(sys.argv[2], x=s.sample(jax.random.key(0), 256, steps=4))\n")
  procs = {}
  for devices in (8, 1):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    procs[devices] = subprocess.Popen([sys.executable, "-c", code, bundle, str(tmp_path / f"fresh{devices}.npz")],
                                      cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
  fresh = {}
  for devices, proc in procs.items():
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with np.load(tmp_path / f"fresh{devices}.npz") as f:
      fresh[devices] = f["x"]
    assert fresh[devices].dtype == np.float32 and fresh[devices].shape == (256, 2)
  assert np.array_equal(fresh[8], x)
  np.testing.assert_allclose(fresh[1], x, rtol=0, atol=1e-4)


def test_samples_use_per_sample_keys(points_bundle):
  s = samplers.load(points_bundle[1])
  key = jax.random.key(7)
  full = s.sample(key, 256, steps=4)
  # A different batch shape may make XLA pick different matmul kernels, so rows agree up to float32 rounding (a
  # sample whose noise depended on the batch size would differ by O(1)).
  np.testing.assert_allclose(s.sample(key, 8, steps=4), full[:8], rtol=0, atol=1e-6)
  np.testing.assert_allclose(s.sample(key, 1, steps=4), full[:1], rtol=0, atol=1e-6)
  # Across the generator's chunk boundary (1000 rows): rows 1000.. equal a generation starting at index 1000.
  big = s.sample(key, 1003, steps=4)
  np.testing.assert_allclose(big[:256], full, rtol=1e-4, atol=1e-4)
  tail = s.generator.generate(s.params, key, 3, 4, first_index=1000)
  np.testing.assert_allclose(big[1000:], tail, rtol=1e-4, atol=1e-4)


def test_with_sampler_swaps_the_solver_and_counts_network_evaluations(points_bundle, tmp_path):
  bundle = points_bundle[1]
  s = samplers.load(bundle)
  assert s.meta["sampler"]["solver"] == "euler"
  key, indices = jax.random.key(3), np.arange(64, dtype=np.int32)

  # Heun through the bundle equals samplers.solve with Heun on the bundle's own grid and network.
  heun = s.with_sampler(solver="heun")
  grid = sigma_grid(heun.meta["sampler"], 4)
  expected = samplers.solve(lambda x, sigma, c: s.network.denoise(s.params, x, sigma, c), key, indices, s.shape,
                            grid, solver="heun")
  x, nfe = heun.sample_with_nfe(key, 64, steps=4)
  np.testing.assert_allclose(x, np.asarray(expected), rtol=0, atol=2e-4)  # sharded vs unsharded rounding
  assert nfe.shape == (64,) and np.all(nfe == samplers.nfe("heun", grid)) and heun.nfe(4) == samplers.nfe("heun", grid)
  assert np.max(np.abs(x - s.sample(key, 64, steps=4))) > 1e-2  # Euler at 4 steps is a different answer

  # The adaptive rk45 at a tight tolerance reaches the ODE's solution: Heun's error shrinks towards it as the grid is
  # refined (second order), and its per-sample counts are what evaluate_sampler reports as the mean NFE.
  rk45 = s.with_sampler(solver="rk45", rtol=1e-6, atol=1e-6)
  x_rk, nfe_rk = rk45.sample_with_nfe(key, 64, steps=4)
  assert rk45.nfe(4) is None and nfe_rk.dtype == np.int32 and np.all(nfe_rk > 6)
  # Both end with one Euler step from the grid's last positive level to sigma = 0, so they differ by Heun's error.
  errors = [np.max(np.abs(heun.sample(key, 64, steps=n) - rk45.sample(key, 64, steps=n))) for n in (4, 16)]
  assert errors[1] < errors[0] / 4
  row = api.evaluate(rk45, "toy:moons", 64, [4], seed=3)[0]
  assert row["solver"] == "rk45" and row["nfe"] == round(float(np.mean(nfe_rk)), 1)

  # The loaded bundle and its file are unchanged; bad settings are user errors.
  assert s.meta["sampler"]["solver"] == "euler"
  assert json.load(open(os.path.join(bundle, "sampler.json")))["sampler"]["solver"] == "euler"
  with pytest.raises(UserError, match="unknown solver 'rk4'"):
    s.with_sampler(solver="rk4")
  with pytest.raises(UserError, match="unknown sampler setting"):
    s.with_sampler(order=2)

  # `distill eval --solver heun` scores the swapped sampler.
  rows_json = str(tmp_path / "rows.json")
  assert cli.main(["eval", "--sampler", bundle, "--solver", "heun", "--steps", "4", "--num", "64", "--json",
                   rows_json]) == 0
  (row,) = json.load(open(rows_json))
  assert row["solver"] == "heun" and row["nfe"] == samplers.nfe("heun", grid)


def _largest_file(folder):
  files = [p for p in glob.glob(os.path.join(folder, "**"), recursive=True) if os.path.isfile(p)]
  return max(files, key=os.path.getsize)


def test_corrupt_or_missing_bundles_are_user_errors(points_bundle, tmp_path):
  bundle = points_bundle[1]

  # 1. The recorded checksum does not match the parameters.
  edited = str(tmp_path / "edited")
  shutil.copytree(bundle, edited)
  meta_path = os.path.join(edited, "sampler.json")
  meta = json.load(open(meta_path))
  meta["checksum"] = ("0" if meta["checksum"][0] != "0" else "1") + meta["checksum"][1:]
  json.dump(meta, open(meta_path, "w"))
  with pytest.raises(UserError, match="checksum"):
    samplers.load(edited)

  # 2. Readable parameters whose values were changed (one float nudged): checksum mismatch.
  modified = str(tmp_path / "modified")
  shutil.copytree(bundle, modified)
  s = samplers.load(bundle)
  pure = jax.tree.map(np.array, nnx.to_pure_dict(s.params))
  pure["out"]["bias"][0] = np.nextafter(pure["out"]["bias"][0], np.float32(1))
  shutil.rmtree(os.path.join(modified, "params"))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(modified, "params"), pure)
  with pytest.raises(UserError, match="checksum mismatch"):
    samplers.load(modified)

  # 3. A flipped byte in the middle of the largest parameter data file.
  flipped = str(tmp_path / "flipped")
  shutil.copytree(bundle, flipped)
  path = _largest_file(os.path.join(flipped, "params"))
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(path, "wb").write(bytes(data))
  with pytest.raises(UserError, match="checksum|corrupt|cannot be read"):
    samplers.load(flipped)

  # 4. Broken JSON, unknown format, missing parameters, missing bundle.
  broken = str(tmp_path / "broken")
  shutil.copytree(bundle, broken)
  open(os.path.join(broken, "sampler.json"), "w").write("{not json")
  with pytest.raises(UserError, match="corrupt"):
    samplers.load(broken)
  future = str(tmp_path / "future")
  shutil.copytree(bundle, future)
  meta = json.load(open(os.path.join(future, "sampler.json")))
  meta["format_version"] = 99
  json.dump(meta, open(os.path.join(future, "sampler.json"), "w"))
  with pytest.raises(UserError, match="format 99"):
    samplers.load(future)
  no_params = str(tmp_path / "no_params")
  shutil.copytree(bundle, no_params)
  shutil.rmtree(os.path.join(no_params, "params"))
  with pytest.raises(UserError, match="parameters cannot be read"):
    samplers.load(no_params)
  with pytest.raises(UserError, match="not a sampler bundle"):
    samplers.load(str(tmp_path / "does-not-exist"))
  # The intact bundle still loads.
  assert samplers.load(bundle).meta["checksum"] == s.meta["checksum"]


def test_export_of_a_workdir_without_checkpoint_or_step(points_bundle, tmp_path):
  workdir = points_bundle[0]
  with pytest.raises(UserError, match="has no checkpoint at step 7"):
    api.export(workdir, str(tmp_path / "b"), step=7)
  empty = str(tmp_path / "empty")
  checkpointing.prepare_workdir(empty, tiny.get_config().to_dict(), overwrite=False)
  with pytest.raises(UserError, match="has no checkpoint"):
    api.export(empty, str(tmp_path / "b"))
  with pytest.raises(UserError, match="not a training workdir"):
    api.export(str(tmp_path / "nothing"), str(tmp_path / "b"))
  assert not os.path.exists(tmp_path / "b")
  # An explicit older step exports that step.
  out = api.export(workdir, str(tmp_path / "b10"), step=10)
  assert samplers.load(out).meta["provenance"]["step"] == 10


def image_config(npz_path: str) -> ml_collections.ConfigDict:
  c = tiny.get_config()
  c.data.source = f"npz:{npz_path}"
  c.data.batch_size = 16
  c.model = ml_collections.ConfigDict(dict(name="unet", channels=(8, 16), num_blocks=1, attn_resolutions=(),
                                           dropout=0.0, noise_scale=1.0, conditional=True))
  c.objective.label_dropout = 0.1
  c.sampler.guidance = 2.0
  c.train.num_steps = 3
  c.mesh.data = 1  # one device: compiling the U-Net's step for 8 fake CPU devices dominates the test's time
  return c


def test_image_bundle_conditional_and_guided(tmp_path):
  rng = np.random.default_rng(0)
  npz = str(tmp_path / "images.npz")
  np.savez(npz, images=rng.integers(0, 256, (64, 8, 8), dtype=np.uint8), labels=np.arange(64) % 4)
  config = image_config(npz)
  workdir = str(tmp_path / "run")
  state = run.train(config, workdir)
  assert int(state.step) == 3
  bundle = api.export(workdir, str(tmp_path / "bundle"))
  s = samplers.load(bundle)
  assert s.kind == "images" and s.shape == (8, 8, 1) and s.num_classes == 4
  assert s.meta["model"]["name"] == "unet" and s.meta["model"]["num_classes"] == 4

  steps = 2
  labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3, 3], np.int32)
  x = s.sample(jax.random.key(0), 10, steps=steps, labels=labels)
  assert isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.shape == (10, 8, 8, 1)
  np.testing.assert_array_equal(s.sample(jax.random.key(0), 4, steps=steps, labels=labels[:4]), x[:4])
  with pytest.raises(ValueError, match="labels must have shape"):
    s.sample(jax.random.key(0), 10, steps=steps, labels=labels[:3])

  # Guidance 2.0: each solver step evaluates the conditional and the unconditional branch.
  plain = samplers.nfe(config.sampler.solver, sigma_grid(config.sampler))
  assert plain == config.sampler.steps
  assert s.meta["nfe"] == s.nfe() == 2 * plain
  assert s.nfe(steps) == 2 * samplers.nfe(config.sampler.solver, sigma_grid(config.sampler, steps))
  unguided = samplers.export_bundle(
      str(tmp_path / "unguided"), s.network, s.params, sampler_config={**s.meta["sampler"], "guidance": 1.0},
      data_spec=run.build_run(config).source.spec)
  assert unguided["nfe"] == plain
  assert samplers.load(str(tmp_path / "unguided")).nfe(steps) * 2 == s.nfe(steps)

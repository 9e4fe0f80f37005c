"""`distill export --stablehlo`: the sampler as serialised StableHLO, sampled by a process that can import only jax and
numpy (an import hook refuses the project's packages and flax) and equal to `samplers.load(B).sample(...)`."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import samplers
from distill.data import DataSpec
from distill.networks import Network
from samplers import stablehlo

# Runs BUNDLE/stablehlo/sample.py's `sample` with the project's packages and flax unimportable.
NO_PROJECT = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("distill", "models", "samplers", "flax", "configs"):
      raise ImportError(f"{name} must not be imported by a StableHLO consumer")
sys.meta_path.insert(0, Refuse())
import importlib.util, json
import numpy as np
folder, cases, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
spec = importlib.util.spec_from_file_location("stablehlo_sample", folder + "/sample.py")
loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
np.savez(out, **{f"case{i}": loader.sample(folder, c["num"], c["steps"], c["seed"], c.get("labels"))
                 for i, c in enumerate(cases)})
print(sorted(m for m in sys.modules if m.split(".")[0] in ("distill", "models", "samplers", "flax")))
"""


def sample_without_project(folder, cases, tmp_path):
  """Run the cases in a fresh process that cannot import the project; returns their samples."""
  out = tmp_path / "hlo_samples.npz"
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  r = subprocess.run([sys.executable, "-c", NO_PROJECT, str(folder), json.dumps(cases), str(out)], cwd=str(tmp_path),
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stdout + r.stderr
  assert r.stdout.strip().splitlines()[-1] == "[]"  # nothing of the project (or flax) was loaded
  with np.load(out) as f:
    return [f[f"case{i}"] for i in range(len(cases))]


def random_bundle(path, model: dict, parameterization: dict, sampler: dict, spec: DataSpec) -> str:
  """A bundle of an untrained network (random parameters are as good as trained ones for equality checks)."""
  network = Network.create(model, parameterization)
  samplers.export_bundle(str(path), network, network.init(jax.random.key(1)), sampler_config=sampler, data_spec=spec)
  return str(path)


def test_points_bundle_without_the_project(tmp_path, tiny_teacher_bundle):
  """A 2-D flow bundle (Euler, 8 steps): files and meta as the contract says, samples equal for several batch
  sizes (the batch dimension is symbolic), one and the default step count."""
  bundle = str(tmp_path / "bundle")
  samplers.export.shutil.copytree(tiny_teacher_bundle, bundle)
  s = samplers.load(bundle)
  assert s.default_steps == 8 and stablehlo.export_stablehlo(s) == [1, 8]
  folder = os.path.join(bundle, "stablehlo")
  assert sorted(os.listdir(folder)) == ["meta.json", "sample.py", "steps_1.bin", "steps_8.bin"]
  meta = json.load(open(os.path.join(folder, "meta.json")))
  assert meta["steps"]["8"]["inputs"] == [{"name": "noise", "dtype": "float32", "shape": ["N", 2]}]
  assert meta["platforms"] == ["cpu", "cuda"] and meta["checksum"] == s.meta["checksum"]

  cases = [dict(num=7, steps=8, seed=3), dict(num=2, steps=1, seed=0), dict(num=33, steps=8, seed=0)]
  for case, got in zip(cases, sample_without_project(folder, cases, tmp_path)):
    want = s.sample(jax.random.key(case["seed"]), case["num"], steps=case["steps"])
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  # The serialised function itself: given noise, the bundle sampler's float samples for that noise.
  exported = jax.export.deserialize(bytearray(open(os.path.join(folder, "steps_8.bin"), "rb").read()))
  x, noise, _ = s.generator.generate_with_noise(s.params, jax.random.key(5), 12, 8)
  np.testing.assert_allclose(np.asarray(exported.call(noise)), x, rtol=1e-5, atol=1e-5)


def test_conditional_image_student_without_the_project(tmp_path):
  """A class-conditional U-Net with the multistep student solver: labels and the renoise draws are inputs, images
  in [-1, 1] whose uint8 form is the bundle sampler's."""
  spec = DataSpec("images", (8, 8, 1), 3, (-1.0, 1.0))
  model = dict(name="unet", resolution=8, in_channels=1, channels=(8, 16), num_blocks=1, attn_resolutions=(),
               dropout=0.0, num_classes=3)
  sampler = dict(solver="student", grid="edm", sigma_min=0.5, sigma_max=80.0, rho=7.0, steps=3)
  bundle = random_bundle(tmp_path / "student", model, dict(name="edm", sigma_data=0.5), sampler, spec)
  s = samplers.load(bundle)
  assert stablehlo.export_stablehlo(s) == [1, 3]
  folder = os.path.join(bundle, "stablehlo")
  meta = json.load(open(os.path.join(folder, "meta.json")))
  assert [a["name"] for a in meta["steps"]["3"]["inputs"]] == ["noise", "labels", "renoise"]
  assert meta["steps"]["3"]["inputs"][2]["shape"] == [2, "N", 8, 8, 1]
  assert [a["name"] for a in meta["steps"]["1"]["inputs"]] == ["noise", "labels"]

  labels = [2, 0, 1, 1, 2]
  cases = [dict(num=5, steps=3, seed=1, labels=labels), dict(num=4, steps=1, seed=0)]
  got = sample_without_project(folder, cases, tmp_path)
  for case, images in zip(cases, got):
    want = s.sample(jax.random.key(case["seed"]), case["num"], steps=case["steps"],
                    labels=None if "labels" not in case else np.array(case["labels"], np.int32))
    assert images.dtype == np.uint8 and images.shape == want.shape
    assert np.abs(images.astype(int) - want.astype(int)).max() <= 1  # uint8 of floats equal up to rounding
    assert np.mean(images == want) > 0.99


@pytest.mark.parametrize("solver", ["heun", "rk45"])
def test_ode_solvers_export(tmp_path, solver):
  """Heun (a fixed grid) and the adaptive rk45 (a while loop with per-sample step control) export and agree with the
  bundle's float samples for the same noise: Heun to float rounding, rk45 to its tolerance (a rounding-level change
  can flip the acceptance of a step, which moves the sample by up to about the tolerance; seen: 1e-4 at 1e-4)."""
  spec = DataSpec("points", (2,), 0, (-4.0, 4.0))
  model = dict(name="mlp", width=32, depth=2, emb_dim=16, noise_scale=1.0)
  sampler = dict(solver=solver, grid="edm", steps=6, sigma_min=0.002, sigma_max=80.0, rho=7.0, rtol=1e-4,
                 atol=1e-4)
  s = samplers.load(random_bundle(tmp_path / solver, model, dict(name="edm", sigma_data=1.0), sampler, spec))
  f = jax.jit(stablehlo.export_function(s, 6).call)
  x, noise, _ = s.generator.generate_with_noise(s.params, jax.random.key(2), 9, 6)
  tolerance = 1e-5 if solver == "heun" else 1e-3
  np.testing.assert_allclose(np.asarray(f(noise)), x, rtol=tolerance, atol=tolerance)

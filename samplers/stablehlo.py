"""A bundle's sampler as serialised StableHLO (`jax.export`), runnable by a process with only jax and numpy.

`export_stablehlo(sampler)` writes BUNDLE/stablehlo/:
  steps_<K>.bin  the bytes of `jax.export.Exported.serialize()` of f(noise[, labels][, renoise]) -> samples, with a
                 symbolic batch dimension N and the parameters embedded as constants:
                   noise    float32 (N, *shape) standard normals (the sampler starts from sigma_max * noise);
                   labels   int32 (N,), only for a class-conditional model;
                   renoise  float32 (K - 1, N, *shape) standard normals, only for the multistep student solver
                            at K > 1 (its fresh noise at each level after the first);
                   samples  float32 (N, *shape) in the data's value range: images in [-1, 1] (EDM's uint8 is
                            clip(x * 127.5 + 128, 0, 255) truncated, exactly what the bundle sampler returns),
                            points as the bundle sampler returns them.
  meta.json      shape, kind, inputs per step count, NFE, platforms, jax version, the bundle's parameter checksum;
  sample.py      a jax + numpy script that loads steps_<K>.bin and samples (python sample.py --help).
Lowered for CPU and CUDA by default: the same file runs on a GPU machine that has jax with CUDA installed.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
from jax import export as jax_export

from distill.errors import UserError
from samplers.export import atomic_folder

STABLEHLO_DIR = "stablehlo"
META_FILE = "meta.json"
DEFAULT_PLATFORMS = ("cpu", "cuda")
LOADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stablehlo_sample.py")


def inputs(sampler, steps: int) -> list[dict]:
  """Name, dtype and shape (N: the batch) of each argument of the exported function at `steps`."""
  args = [{"name": "noise", "dtype": "float32", "shape": ["N", *sampler.shape]}]
  if sampler.num_classes:
    args.append({"name": "labels", "dtype": "int32", "shape": ["N"]})
  draws = sampler.generator.num_renoise(steps)
  if draws:
    args.append({"name": "renoise", "dtype": "float32", "shape": [draws, "N", *sampler.shape]})
  return args


def sampling_function(sampler, steps: int):
  """f(*inputs(sampler, steps)) -> float32 samples (N, *shape) in the data's value range, the parameters closed
  over; equal to the bundle's sampler for the same noise."""
  sample = sampler.generator.from_noise(steps)
  conditional, draws = bool(sampler.num_classes), sampler.generator.num_renoise(steps)
  lo, hi = sampler.meta["data"]["data_range"]

  def f(noise, *rest):
    labels = rest[0] if conditional else None
    renoise = rest[-1] if draws else None
    x, _ = sample(sampler.params, noise, labels, renoise)
    return jnp.clip(x, lo, hi) if sampler.kind == "images" else x

  return f


def export_function(sampler, steps: int, platforms=DEFAULT_PLATFORMS) -> jax_export.Exported:
  """`jax.export` of sampling_function(sampler, steps) with a symbolic batch dimension."""
  n, = jax_export.symbolic_shape("N")
  dtypes = {"float32": jnp.float32, "int32": jnp.int32}
  specs = [jax.ShapeDtypeStruct(tuple(n if d == "N" else d for d in a["shape"]), dtypes[a["dtype"]])
           for a in inputs(sampler, steps)]
  return jax_export.export(jax.jit(sampling_function(sampler, steps)), platforms=tuple(platforms))(*specs)


def export_stablehlo(sampler, steps_list=None, platforms=DEFAULT_PLATFORMS) -> list[int]:
  """Write sampler.path/stablehlo/ (replacing an older one) for each step count in `steps_list` (default: 1 and the
  bundle's default; an explicit sigma grid has only its own count); returns the step counts written."""
  if "multi_student" in sampler.meta:
    raise UserError(f"{sampler.path} holds {sampler.meta['multi_student']['num_students']} routed students; StableHLO "
                    "export takes a single-network bundle")
  if steps_list is None:
    explicit = sampler.meta["sampler"]["grid"] == "explicit"
    steps_list = [sampler.default_steps] if explicit else [1, sampler.default_steps]
  steps_list = sorted({int(k) for k in steps_list})
  meta = {"shape": list(sampler.shape), "kind": sampler.kind, "num_classes": sampler.num_classes,
          "data_range": sampler.meta["data"]["data_range"], "default_steps": sampler.default_steps,
          "platforms": list(platforms), "jax_version": jax.__version__, "checksum": sampler.meta["checksum"],
          "steps": {}}
  with atomic_folder(os.path.join(sampler.path, STABLEHLO_DIR), prefix=".stablehlo-") as tmp:
    for steps in steps_list:
      name = f"steps_{steps}.bin"
      with open(os.path.join(tmp, name), "wb") as f:
        f.write(export_function(sampler, steps, platforms).serialize())
      meta["steps"][str(steps)] = {"file": name, "inputs": inputs(sampler, steps), "nfe": sampler.nfe(steps),
                                   "solver": sampler.meta["sampler"]["solver"]}
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(meta, f, indent=2)
    shutil.copyfile(LOADER, os.path.join(tmp, "sample.py"))
  return steps_list

"""Sample an exported StableHLO sampler with nothing but jax and numpy (copied into BUNDLE/stablehlo/sample.py).

  python BUNDLE/stablehlo/sample.py --num 64 [--steps K] [--seed 0] [--labels 3] --out samples.npz

Sample i starts from normal(fold_in(fold_in(key(seed), i), 0)) (and its k-th fresh draw of a multistep student from
fold_in(..., k + 1)), the bundle sampler's scheme, so the result equals `samplers.load(BUNDLE).sample(key(seed),
num)` up to float rounding. Images come out as uint8 (N, H, W, C), points as float32 (N, D). On a machine with jax
for CUDA the same file runs on the GPU (the artefact holds CPU and CUDA lowerings; see meta.json "platforms").
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np


def load(folder: str, steps: int | None = None):
  """(the deserialised jax.export.Exported for `steps` (default: the bundle's default), the folder's meta.json)."""
  with open(os.path.join(folder, "meta.json")) as f:
    meta = json.load(f)
  steps = str(steps or meta["default_steps"])
  if steps not in meta["steps"]:
    raise SystemExit(f"no StableHLO sampler for {steps} steps in {folder}; exported: {', '.join(meta['steps'])}")
  with open(os.path.join(folder, meta["steps"][steps]["file"]), "rb") as f:
    return jax.export.deserialize(bytearray(f.read())), meta


def noise_inputs(meta: dict, steps: int, num: int, seed: int = 0, labels=None) -> list[np.ndarray]:
  """The exported function's inputs for samples 0 .. num - 1 under `seed` (labels: default index mod classes)."""
  shape = tuple(meta["shape"])
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(num, dtype=jnp.int32))
  draw = lambda k: jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, k), shape))(keys)
  args = []
  for spec in meta["steps"][str(steps)]["inputs"]:
    if spec["name"] == "noise":
      args.append(np.asarray(draw(0)))
    elif spec["name"] == "labels":
      default = np.arange(num) % meta["num_classes"]
      args.append(np.resize(np.asarray(default if labels is None else labels, np.int32), num))
    else:  # renoise: the multistep student's k-th fresh draw uses fold_in(key_i, k + 1)
      args.append(np.stack([np.asarray(draw(k + 1)) for k in range(spec["shape"][0])]))
  return args


def sample(folder: str, num: int, steps: int | None = None, seed: int = 0, labels=None) -> np.ndarray:
  """uint8 images (N, H, W, C) or float32 points (N, D) from the exported sampler in `folder`."""
  exported, meta = load(folder, steps)
  steps = int(steps or meta["default_steps"])
  x = np.asarray(exported.call(*noise_inputs(meta, steps, num, seed, labels)))
  if meta["kind"] == "images":
    return np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8)
  return x


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dir", default=os.path.dirname(os.path.abspath(__file__)), help="the stablehlo folder")
  parser.add_argument("--num", type=int, required=True, help="number of samples")
  parser.add_argument("--steps", type=int, default=None, help="an exported step count (default: the bundle's)")
  parser.add_argument("--seed", type=int, default=0, help="sample i uses fold_in(key(seed), i)")
  parser.add_argument("--labels", default=None, help="comma-separated class labels, repeated to --num")
  parser.add_argument("--out", required=True, help="output .npz (key 'samples')")
  args = parser.parse_args()
  labels = [int(v) for v in args.labels.split(",")] if args.labels else None
  x = sample(args.dir, args.num, args.steps, args.seed, labels)
  np.savez(args.out, samples=x)
  print(f"wrote {x.shape} {x.dtype} samples to {args.out} ({jax.default_backend()})")


if __name__ == "__main__":
  main()

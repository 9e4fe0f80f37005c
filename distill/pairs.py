"""Teacher pairs for reflow and one-step distillation: (noise z, teacher ODE sample x1, label) in float32 shards.

A pair store is a folder:
  pairs.json        metadata: the teacher (parameter checksum, where it came from, data kind/shape/range/classes),
                    the solver settings and NFE (None for the adaptive rk45), the seed, the number of pairs and the shard size;
  shard_00000.npz   'noise' and 'x' (n, *shape) float32, 'index' (n,) int64 global pair indices, 'nfe' (n,) the
                    network evaluations of each pair (varies with rk45), and 'label' (n,) int32 (index mod
                    num_classes) for conditional teachers.
Pair i starts from noise_i = normal(fold_in(fold_in(key(seed), i), 0)) (x = sigma_max * noise_i in EDM coordinates,
x_rf = (1 - t_eps) noise_i in RF coordinates) and x1_i is the teacher's ODE solution from it, so pair i is the same
for any shard size, batch size or device count (up to float rounding across batch shapes). Shards are written to a
temporary file and renamed; an interrupted generation continues at the first missing shard, and a store made with
other settings is refused. Samples are not clipped or quantised.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time

import jax
import numpy as np

from distill.errors import UserError

FORMAT_VERSION = 1
META_FILE = "pairs.json"
SHARD_PATTERN = "shard_{:05d}.npz"
# Settings that must agree between an existing store and a generation that continues it.
RESUME_KEYS = ("teacher.checksum", "sampler", "steps", "seed", "num", "shard_size", "data")


def _flat(d: dict, prefix="") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and k != "sampler":
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def read_metadata(path: str) -> dict:
  meta_path = os.path.join(path, META_FILE)
  if not os.path.exists(meta_path):
    raise UserError(f"{path} is not a pair store (no {META_FILE}); create one with `distill pairs`")
  try:
    with open(meta_path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"{meta_path} is unreadable ({e})") from None


def _write_json(path: str, obj: dict) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".meta-")
  with os.fdopen(fd, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def store_metadata(teacher, sampler_config: dict, steps: int, nfe, seed: int, num: int, shard_size: int) -> dict:
  data = teacher.bundle_meta["data"]
  return {
      "format_version": FORMAT_VERSION,
      "teacher": {"checksum": teacher.bundle_meta["checksum"], "bundle": teacher.bundle_meta.get("path", ""),
                  "model": teacher.bundle_meta["model"].get("name"),
                  "parameterization": teacher.bundle_meta["parameterization"]},
      "sampler": dict(sampler_config), "steps": int(steps), "nfe": nfe, "seed": int(seed), "num": int(num),
      "shard_size": int(shard_size), "data": data,
  }


def _check_resumable(path: str, saved: dict, wanted: dict) -> None:
  a, b = _flat(saved), _flat(wanted)
  differ = [k for k in sorted(set(a) | set(b))
            if any(k == r or k.startswith(r + ".") for r in RESUME_KEYS) and a.get(k) != b.get(k)]
  if differ:
    shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in differ[:4])
    raise UserError(f"pair store {path} was made with other settings: {shown}; use another --out")


def generate_pairs(out: str, teacher, *, num: int, seed: int = 0, shard_size: int = 10_000,
                   sampler_config: dict | None = None, steps: int | None = None, batch_size: int = 1000,
                   log=print) -> dict:
  """Generate (or continue generating) `num` pairs from `teacher` (distill.teacher.Teacher) into `out`.

  The solver defaults to the teacher bundle's sampler; `steps` to its default steps. Returns the metadata.
  """
  from samplers.generator import Generator, default_labels

  sampler_config = dict(sampler_config or teacher.bundle_meta["sampler"])
  steps = int(steps or sampler_config["steps"])
  shape = tuple(teacher.bundle_meta["data"]["shape"])
  generator = Generator(teacher.network, shape, sampler_config, batch_size=batch_size)
  meta = store_metadata(teacher, sampler_config, steps, generator.nfe(steps), seed, num, shard_size)
  os.makedirs(out, exist_ok=True)
  meta_path = os.path.join(out, META_FILE)
  if os.path.exists(meta_path):
    _check_resumable(out, read_metadata(out), meta)
  elif jax.process_index() == 0:
    _write_json(meta_path, meta)
  num_classes = generator.num_classes
  num_shards = -(-num // shard_size)
  key = jax.random.key(seed)
  for shard in range(num_shards):
    path = os.path.join(out, SHARD_PATTERN.format(shard))
    if os.path.exists(path):
      continue
    start = time.time()
    first, n = shard * shard_size, min(shard_size, num - shard * shard_size)
    indices = np.arange(first, first + n, dtype=np.int64)
    labels = default_labels(indices, num_classes) if num_classes else None
    x, noise, nfe = generator.generate_with_noise(teacher.params, key, n, steps, labels, first_index=first)
    arrays = {"x": x.astype(np.float32), "noise": noise.astype(np.float32), "index": indices, "nfe": nfe}
    if labels is not None:
      arrays["label"] = labels
    if jax.process_index() == 0:
      fd, tmp = tempfile.mkstemp(dir=out, prefix=".shard-")
      with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
      os.replace(tmp, path)
    log(f"pairs shard {shard + 1}/{num_shards}: {n} pairs in {time.time() - start:.1f}s "
        f"({n / (time.time() - start):.0f} pairs/s, {nfe.mean():.1f} NFE per pair)")
  return meta


def load_pairs(path: str) -> tuple[dict, dict[str, np.ndarray]]:
  """(metadata, arrays 'x', 'noise', 'index' and 'label' when conditional) of a complete pair store."""
  meta = read_metadata(path)
  expected = -(-meta["num"] // meta["shard_size"])
  shards = sorted(glob.glob(os.path.join(path, "shard_*.npz")))
  if len(shards) != expected:
    raise UserError(f"pair store {path} is incomplete ({len(shards)} of {expected} shards); rerun the same "
                    "`distill pairs` command to finish it")
  parts = []
  for shard in shards:
    try:
      with np.load(shard) as f:
        parts.append({k: f[k] for k in f.files})
    except (OSError, ValueError) as e:
      raise UserError(f"pair shard {shard} is corrupt ({type(e).__name__}: {e}); delete it and rerun `distill pairs`")
  arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  if not np.array_equal(arrays["index"], np.arange(meta["num"])):
    raise UserError(f"pair store {path} does not hold pairs 0..{meta['num'] - 1} exactly once")
  return meta, arrays


def check_teacher(meta: dict, teacher, path: str) -> None:
  """Refuse a pair store made by another teacher than the configured one (compared by parameter checksum)."""
  if teacher is not None and teacher.bundle_meta.get("checksum") != meta["teacher"]["checksum"]:
    raise UserError(f"pair store {path} was made by teacher {meta['teacher']['checksum'][:12]}..., not by the "
                    f"configured teacher {teacher.bundle_meta.get('checksum', '')[:12]}...")

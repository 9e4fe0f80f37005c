"""Self-contained sampler bundles: `export_bundle(...)` writes one, `load(path)` samples from it in any process.

A bundle is a folder:
  sampler.json  model name and arguments, output parameterisation, sampler settings and default steps, data kind,
                shape, value range and classes, NFE, the SHA-256 of the parameters, provenance; for K students
                (distill/stacked.py) also 'multi_student': {'num_students': K, 'router': ...}; for a restoration
                model (OFTSR) 'restoration': its degradation and sampler (samplers/restoration.py);
  params/       the (EMA) parameters as an orbax checkpoint of a plain nested dict (K students: stacked on a leading
                axis, so the checksum covers every student).
It is written to a temporary folder and renamed into place, so a bundle is either complete or absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from distill.errors import UserError
from distill.images import to_uint8
from distill.networks import Network
from distill.stacked import Router, StackedNetwork, is_stacked
from samplers.generator import Generator
from samplers.ode import SOLVERS
from samplers.restoration import Restorer

FORMAT_VERSION = 1
META_FILE = "sampler.json"
PARAMS_DIR = "params"


def params_checksum(pure_params: dict) -> str:
  """SHA-256 over every parameter's name, dtype, shape and bytes, in sorted name order."""
  h = hashlib.sha256()
  flat = jax.tree_util.tree_flatten_with_path(pure_params)[0]
  for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def export_bundle(out: str, network, params, *, sampler_config: dict, data_spec, provenance: dict | None = None,
                  restoration: dict | None = None) -> dict:
  """Write a bundle for `network` with parameters `params` (nnx.State); returns the metadata written.
  `restoration`: the degradation and sampler of a restoration model (samplers/restoration.py)."""
  pure = jax.tree.map(lambda a: np.asarray(jax.device_get(a)), nnx.to_pure_dict(params))
  generator = Generator(network, data_spec.shape, sampler_config)
  meta = {
      "format_version": FORMAT_VERSION,
      "model": network.config(),
      "parameterization": dataclasses.asdict(network.parameterization),
      "sampler": dict(sampler_config),
      "default_steps": int(sampler_config["steps"]),
      "nfe": generator.nfe(),
      "data": {"kind": data_spec.kind, "shape": list(data_spec.shape), "num_classes": int(data_spec.num_classes),
               "data_range": list(data_spec.data_range)},
      "checksum": params_checksum(pure),
      "provenance": provenance or {},
  }
  if restoration:
    meta["restoration"] = dict(restoration)
  if is_stacked(network):
    meta["multi_student"] = {"num_students": network.num_students, "router": network.router.to_dict()}
  with atomic_folder(out, prefix=".bundle-") as tmp:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.join(tmp, PARAMS_DIR), pure)
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True, default=_json_default)
  return meta


@contextlib.contextmanager
def atomic_folder(out: str, prefix: str = ".tmp-"):
  """Yield a temporary folder beside `out`; when the block succeeds it replaces `out`, when it fails it is removed,
  so `out` is always either complete or as it was."""
  out = os.path.abspath(out)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=prefix, dir=os.path.dirname(out))
  try:
    yield tmp
    if os.path.exists(out):
      shutil.rmtree(out)
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def _json_default(o):
  if isinstance(o, (np.integer, np.floating)):
    return o.item()
  if isinstance(o, tuple):
    return list(o)
  raise TypeError(f"not JSON serialisable: {type(o)}")


class ExportedSampler:
  """A loaded bundle. `sample(key, num, steps=None, labels=None)` returns numpy samples in data range:
  uint8 (num, H, W, C) images or float32 (num, D) points. A restoration bundle instead restores:
  `observe(key, x)` degrades clean samples, `restore(key, observed, steps=None, knob=None)` restores them (both in the
  model's data space, images in [-1, 1]; samplers/restoration.py)."""

  def __init__(self, path: str, meta: dict, network, params):
    self.path, self.meta, self.network, self.params = path, meta, network, params
    self.shape = tuple(meta["data"]["shape"])
    self.kind = meta["data"]["kind"]
    self.default_steps = int(meta["default_steps"])
    self.generator = Generator(network, self.shape, meta["sampler"])
    self.restorer = Restorer(network, meta["restoration"], self.default_steps) if "restoration" in meta else None

  @property
  def num_classes(self) -> int:
    return int(self.meta["data"]["num_classes"]) if dict(self.network.model_kwargs).get("num_classes") else 0

  def nfe(self, steps: int | None = None) -> int:
    return self.generator.nfe(steps or self.default_steps)

  def sample(self, key, num: int, steps: int | None = None, labels=None, first_index: int = 0) -> np.ndarray:
    """Samples first_index .. first_index + num - 1 (sample i from fold_in(key, i))."""
    return self.sample_with_nfe(key, num, steps, labels, first_index)[0]

  def sample_with_nfe(self, key, num: int, steps: int | None = None, labels=None,
                      first_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(samples as `sample` returns them, the network evaluations each one used: int32 (num,)); the counts differ
    between samples only for the adaptive rk45 solver."""
    if self.restorer is not None:
      raise UserError(f"{self.path} is a restoration model: it restores degraded inputs (restore(key, observed), "
                      "`distill restore`) rather than sampling from noise")
    x, _, nfe = self.generator.generate_with_noise(self.params, key, int(num), steps or self.default_steps, labels,
                                                    first_index)
    if self.kind == "images":
      return to_uint8(x), nfe
    return x.astype(np.float32), nfe

  def observe(self, key, x, first_index: int = 0) -> np.ndarray:
    """A restoration bundle's lifted measurements of clean samples x (data space)."""
    return self._restorer().observe(key, x, first_index)

  def restore(self, key, observed, steps: int | None = None, knob: float | None = None,
              first_index: int = 0) -> np.ndarray:
    """A restoration bundle's restorations of lifted measurements (data space); a teacher takes `steps` (default:
    the bundle's), an OFTSR student one step at time `knob` (default 0.99, the realism end)."""
    return self._restorer().restore(self.params, key, observed, steps, knob, first_index)

  def _restorer(self):
    if self.restorer is None:
      raise UserError(f"{self.path} samples from noise; only a restoration model (OFTSR) restores")
    return self.restorer

  def with_sampler(self, **overrides) -> "ExportedSampler":
    """The same network and parameters with sampler settings replaced, e.g. `with_sampler(solver="heun")` or
    `with_sampler(solver="rk45", rtol=1e-4, atol=1e-4)`; the bundle on disk is unchanged."""
    unknown = set(overrides) - {"solver", "grid", "steps", "guidance", "rtol", "atol", "sigma_min", "sigma_max",
                                "rho", "t_eps", "sigmas"}
    if unknown:
      raise UserError(f"unknown sampler setting(s) {sorted(unknown)}")
    solver, valid_solvers = overrides.get("solver", self.meta["sampler"]["solver"]), [*SOLVERS, "student"]
    if solver not in valid_solvers:
      raise UserError(f"unknown solver {solver!r}; valid: {', '.join(valid_solvers)}")
    meta = {**self.meta, "sampler": {**self.meta["sampler"], **overrides}}
    if "steps" in overrides:
      meta["default_steps"] = int(overrides["steps"])
    swapped = ExportedSampler(self.path, meta, self.network, self.params)
    meta["nfe"] = swapped.nfe()  # the recorded count was the exported solver's (None for the adaptive rk45)
    return swapped


def load(path: str) -> ExportedSampler:
  """Load a bundle written by `distill export`; verifies its checksum. Needs nothing but the path."""
  path = os.path.abspath(path)
  meta_path = os.path.join(path, META_FILE)
  if not os.path.exists(meta_path):
    raise UserError(f"{path} is not a sampler bundle (no {META_FILE})")
  try:
    with open(meta_path) as f:
      meta = json.load(f)
  except json.JSONDecodeError as e:
    raise UserError(f"{meta_path} is corrupt: {e}") from None
  if meta.get("format_version") != FORMAT_VERSION:
    raise UserError(f"{path}: bundle format {meta.get('format_version')} is not supported (expected {FORMAT_VERSION})")
  network = Network.create(meta["model"], meta["parameterization"])
  if "multi_student" in meta:
    network = _stacked_network(path, network, meta["multi_student"])
  abstract = nnx.to_pure_dict(network.abstract_params())
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), abstract)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      pure = ckptr.restore(os.path.join(path, PARAMS_DIR), target)
  except Exception as e:  # orbax raises several types for missing or damaged files
    raise UserError(f"{path}: parameters cannot be read ({type(e).__name__}: {e})") from None
  pure = jax.tree.map(np.asarray, pure)
  if params_checksum(pure) != meta["checksum"]:
    raise UserError(f"{path}: parameter checksum mismatch (the bundle is corrupt or was modified)")
  params = network.abstract_params()
  nnx.replace_by_pure_dict(params, pure)
  return ExportedSampler(path, meta, network, params)


def _stacked_network(path: str, network: Network, multi: dict) -> StackedNetwork:
  """The bundle's students and router, checked against each other and against the stored parameters."""
  try:
    router = Router.from_dict(multi["router"])
  except (KeyError, TypeError, ValueError) as e:
    raise UserError(f"{path}: the bundle's router is invalid ({e})") from None
  if router.num_students != int(multi["num_students"]):
    raise UserError(f"{path}: the router serves {router.num_students} students but the bundle holds "
                    f"{multi['num_students']}")
  with ocp.StandardCheckpointer() as ckptr:
    stored = ckptr.metadata(os.path.join(path, PARAMS_DIR))
  stored = getattr(stored, "item_metadata", stored)
  leading = {int(leaf.shape[0]) for leaf in jax.tree.leaves(stored, is_leaf=lambda x: hasattr(x, "shape"))
             if hasattr(leaf, "shape") and len(leaf.shape)}
  if leading != {router.num_students}:
    raise UserError(f"{path}: the router serves {router.num_students} students but the stored parameters hold "
                    f"{sorted(leading)}")
  return StackedNetwork(network, router)

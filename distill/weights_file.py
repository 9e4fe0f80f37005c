"""Converted pretrained weights (FID Inception, LPIPS): one .npz of float32 arrays named by NNX path, checksummed.

The .npz holds one array per model variable ('Mixed_5b/branch1x1/conv/kernel', 'features_0/kernel', ...) plus a JSON
metadata string under METADATA_KEY whose `weights_sha256` covers the arrays (see `weights_sha256`). Files are
written atomically; loading checks the checksum and every parameter's shape, and errors name the parameter.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from distill.errors import UserError

METADATA_KEY = "__metadata__"
FORMAT_VERSION = 1


def weights_sha256(arrays: dict[str, np.ndarray]) -> str:
  """SHA-256 over the arrays' names, dtypes, shapes and bytes, in sorted name order."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    value = np.ascontiguousarray(arrays[name])
    header = json.dumps([name, value.dtype.str, list(value.shape)])
    digest.update(header.encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def variable_shapes(model: nnx.Module) -> dict[str, tuple[int, ...]]:
  """Flat '/'-joined NNX path -> shape for every variable of a (possibly abstract) model."""
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model)), sep="/")
  return {name: tuple(leaf.shape) for name, leaf in flat.items()}


def save_weights(arrays: dict[str, np.ndarray], out_npz: str, **metadata) -> dict:
  """Write arrays plus metadata (format_version, weights_sha256 and the given fields) to out_npz atomically
  (temp file in the same folder, then rename). Returns the metadata."""
  metadata = {"format_version": FORMAT_VERSION, **metadata, "weights_sha256": weights_sha256(arrays)}
  out_dir = os.path.dirname(os.path.abspath(out_npz))
  os.makedirs(out_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".weights-", suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays, **{METADATA_KEY: np.array(json.dumps(metadata))})
    os.replace(tmp, out_npz)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return metadata


def load_into(model: nnx.Module, path: str, what: str, redo: str) -> tuple[nnx.Module, dict]:
  """(model filled from the converted .npz at path, its metadata); `model` may be abstract (nnx.eval_shape).

  `what` names the weights in errors, `redo` says how to make the file again. Raises UserError when the file is
  unreadable, fails its checksum, has another format version or does not fit the model (naming the parameter).
  """
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {name: npz[name] for name in npz.files}
    metadata = json.loads(str(arrays.pop(METADATA_KEY)))
    stored_sha256 = metadata["weights_sha256"]
  except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"{path} is not a readable {what} weights file ({e}); {redo}") from None
  if metadata.get("format_version") != FORMAT_VERSION:
    raise UserError(f"{path} has format version {metadata.get('format_version')}, this code reads "
                    f"{FORMAT_VERSION}; {redo}")
  if weights_sha256(arrays) != stored_sha256:
    raise UserError(f"{path} fails its checksum (corrupt or modified); {redo}")
  expected = variable_shapes(model)
  missing, unexpected = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
  if missing or unexpected:
    raise UserError(f"{path} does not fit {what}: missing {missing}, unexpected {unexpected}")
  for name, shape in expected.items():
    if arrays[name].shape != shape:
      raise UserError(f"{path}: parameter {name} has shape {arrays[name].shape}, {what} expects {shape}")
  graphdef, state = nnx.split(model)
  values = {name: jnp.asarray(value, jnp.float32) for name, value in arrays.items()}
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(values, sep="/"))
  return nnx.merge(graphdef, state), metadata


def torch_state_dict(path: str, what: str, obtain: str) -> dict[str, np.ndarray]:
  """A PyTorch state dict file as {key: numpy array}; torch is imported only here. `obtain` says where to get it."""
  if not os.path.isfile(path):
    raise UserError(f"{path} not found; {obtain}")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError(f"converting the {what} weights needs PyTorch (only for this one step): pip install torch, "
                    "then rerun") from None
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{path} is not a readable PyTorch state dict: {e}") from None
  if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
    raise UserError(f"{path} does not hold a state dict of tensors; {obtain}")
  return {k: v.detach().cpu().numpy() for k, v in state_dict.items()}

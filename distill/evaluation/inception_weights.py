"""The FID Inception weights: one-time conversion of pytorch-fid's .pth to an .npz, and loading it into InceptionV3.

The .npz holds one float32 array per model variable, named by its NNX path ('Mixed_5b/branch1x1/conv/kernel',
'.../bn/scale', '.../bn/mean', ...), plus a JSON metadata string under METADATA_KEY whose `weights_sha256` covers
the arrays (see `weights_sha256`). Nothing here downloads anything; torch is needed only by `convert`.
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
from models.inception import InceptionV3

OFFICIAL_PTH = "pt_inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"  # torch-hub convention: the file name's suffix starts the file's SHA-256.
OFFICIAL_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{OFFICIAL_PTH}"
ENV_VAR = "DISTILL_INCEPTION_WEIGHTS"
METADATA_KEY = "__metadata__"
FORMAT_VERSION = 1

_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def default_weights_path() -> str:
  """$DISTILL_INCEPTION_WEIGHTS, else ~/.cache/distill/inception_fid.npz."""
  return os.environ.get(ENV_VAR) or os.path.expanduser("~/.cache/distill/inception_fid.npz")


def _abstract_model() -> InceptionV3:
  return nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))


def _expected_shapes(model: InceptionV3) -> dict[str, tuple[int, ...]]:
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model)), sep="/")
  return {name: tuple(leaf.shape) for name, leaf in flat.items()}


def variable_shapes() -> dict[str, tuple[int, ...]]:
  """Flat '/'-joined NNX path -> shape, for every InceptionV3 variable (traced abstractly, nothing initialised)."""
  return _expected_shapes(_abstract_model())


def _torch_to_nnx_name(key: str) -> tuple[str, bool] | None:
  """torch state-dict key -> (NNX path, whether the array is a conv weight); None for keys that are not ours."""
  *prefix, layer, leaf = key.split(".")
  if layer == "conv" and leaf == "weight":
    return "/".join([*prefix, "conv", "kernel"]), True
  if layer == "bn" and leaf in _BN_NAMES:
    return "/".join([*prefix, "bn", _BN_NAMES[leaf]]), False
  return None


def state_dict_to_arrays(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """pytorch-fid FID Inception state dict (numpy arrays) -> {NNX variable path: float32 array}.

  Conv weights go from OIHW to HWIO; BatchNorm weight/bias/running_mean/running_var become scale/bias/mean/var;
  `fc.*` and `*.num_batches_tracked` are dropped. Raises ValueError naming unexpected or missing keys and
  mismatched shapes.
  """
  expected = variable_shapes()
  arrays, unexpected = {}, []
  for key, value in state_dict.items():
    if key.startswith("fc.") or key.endswith(".num_batches_tracked"):
      continue
    mapped = _torch_to_nnx_name(key)
    if mapped is None or mapped[0] not in expected:
      unexpected.append(key)
      continue
    name, is_conv = mapped
    value = np.asarray(value, np.float32)
    arrays[name] = np.ascontiguousarray(value.transpose(2, 3, 1, 0) if is_conv and value.ndim == 4 else value)
  missing = sorted(set(expected) - set(arrays))
  if unexpected or missing:
    raise ValueError(f"not a pytorch-fid FID Inception state dict: unexpected keys {sorted(unexpected)}, "
                     f"missing variables {missing}")
  for name, value in arrays.items():
    if value.shape != expected[name]:
      raise ValueError(f"{name}: shape {value.shape} in the state dict, the model expects {expected[name]}")
  return arrays


def weights_sha256(arrays: dict[str, np.ndarray]) -> str:
  """SHA-256 over the arrays' names, dtypes, shapes and bytes, in sorted name order."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    value = np.ascontiguousarray(arrays[name])
    header = json.dumps([name, value.dtype.str, list(value.shape)])
    digest.update(header.encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def _file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def save_weights(arrays: dict[str, np.ndarray], out_npz: str, *, source_file: str, source_sha256: str) -> dict:
  """Write arrays plus their metadata to out_npz atomically (temp file in the same folder, then rename).

  Returns the metadata: format_version, source_file, source_sha256, weights_sha256.
  """
  metadata = {"format_version": FORMAT_VERSION, "source_file": source_file, "source_sha256": source_sha256,
              "weights_sha256": weights_sha256(arrays)}
  out_dir = os.path.dirname(os.path.abspath(out_npz))
  os.makedirs(out_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".inception-", suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays, **{METADATA_KEY: np.array(json.dumps(metadata))})
    os.replace(tmp, out_npz)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return metadata


def convert(pth_path: str, out_npz: str, *, check_hash: bool = True) -> dict:
  """Convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth to the .npz that `load_inception` reads.

  Checks that the file's SHA-256 starts with OFFICIAL_SHA256_PREFIX unless check_hash is False. Returns the
  metadata written (see `save_weights`).
  """
  if not os.path.isfile(pth_path):
    raise UserError(f"{pth_path} not found; obtain {OFFICIAL_PTH} from pytorch-fid's release ({OFFICIAL_URL})")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError("converting the FID Inception weights needs PyTorch (only for this one step): "
                    "pip install torch, then rerun") from None
  source_sha256 = _file_sha256(pth_path)
  if check_hash and not source_sha256.startswith(OFFICIAL_SHA256_PREFIX):
    raise UserError(f"{pth_path} has SHA-256 {source_sha256[:16]}..., not the official {OFFICIAL_SHA256_PREFIX}...; "
                    f"obtain {OFFICIAL_PTH} from pytorch-fid's release ({OFFICIAL_URL})")
  try:
    state_dict = torch.load(pth_path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{pth_path} is not a readable PyTorch state dict: {e}") from None
  if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
    raise UserError(f"{pth_path} does not hold a state dict of tensors; obtain {OFFICIAL_PTH} from pytorch-fid")
  try:
    arrays = state_dict_to_arrays({k: v.detach().cpu().numpy() for k, v in state_dict.items()})
  except ValueError as e:
    raise UserError(f"{pth_path}: {e}") from None
  return save_weights(arrays, out_npz, source_file=os.path.basename(pth_path), source_sha256=source_sha256)


def load_inception(path: str | None = None) -> tuple[InceptionV3, dict]:
  """(InceptionV3 filled from the converted .npz at path or `default_weights_path()`, its metadata).

  Raises UserError when the file is missing, unreadable, fails its checksum, or does not fit the model.
  """
  path = path or default_weights_path()
  if not os.path.isfile(path):
    raise UserError(f"FID Inception weights not found at {path}: obtain {OFFICIAL_PTH} from pytorch-fid's release "
                    f"({OFFICIAL_URL}) and run `distill fid convert-weights --pth <file> --out {path}`")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {name: npz[name] for name in npz.files}
    metadata = json.loads(str(arrays.pop(METADATA_KEY)))
    stored_sha256 = metadata["weights_sha256"]
  except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
    raise UserError(f"{path} is not a readable FID Inception weights file ({e}); convert the weights again") from None
  if metadata.get("format_version") != FORMAT_VERSION:
    raise UserError(f"{path} has format version {metadata.get('format_version')}, this code reads "
                    f"{FORMAT_VERSION}; convert the weights again")
  if weights_sha256(arrays) != stored_sha256:
    raise UserError(f"{path} fails its checksum (corrupt or modified); convert the weights again")
  model = _abstract_model()
  expected = _expected_shapes(model)
  missing, unexpected = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
  if missing or unexpected:
    raise UserError(f"{path} does not fit InceptionV3: missing {missing}, unexpected {unexpected}")
  for name, shape in expected.items():
    if arrays[name].shape != shape:
      raise UserError(f"{path}: parameter {name} has shape {arrays[name].shape}, InceptionV3 expects {shape}")
  graphdef, state = nnx.split(model)
  values = {name: jnp.asarray(value, jnp.float32) for name, value in arrays.items()}
  nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(values, sep="/"))
  return nnx.merge(graphdef, state), metadata


__all__ = [
    "OFFICIAL_PTH", "OFFICIAL_SHA256_PREFIX", "OFFICIAL_URL", "convert", "default_weights_path", "load_inception",
    "save_weights", "state_dict_to_arrays", "variable_shapes", "weights_sha256",
]

"""The FID Inception weights: one-time conversion of pytorch-fid's .pth to an .npz, and loading it into InceptionV3.

The .npz (see distill/weights_file.py) holds one float32 array per model variable, named by its NNX path
('Mixed_5b/branch1x1/conv/kernel', '.../bn/scale', '.../bn/mean', ...). Nothing here downloads anything; torch is
needed only by `convert`.
"""

from __future__ import annotations

import os

import numpy as np
from flax import nnx

from distill import weights_file
from distill.errors import UserError
from distill.weights_file import FORMAT_VERSION, METADATA_KEY, save_weights, weights_sha256
from models.inception import InceptionV3

OFFICIAL_PTH = "pt_inception-2015-12-05-6726825d.pth"
OFFICIAL_SHA256_PREFIX = "6726825d"  # torch-hub convention: the file name's suffix starts the file's SHA-256.
OFFICIAL_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{OFFICIAL_PTH}"
ENV_VAR = "DISTILL_INCEPTION_WEIGHTS"

_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def default_weights_path() -> str:
  """$DISTILL_INCEPTION_WEIGHTS, else ~/.cache/distill/inception_fid.npz."""
  return os.environ.get(ENV_VAR) or os.path.expanduser("~/.cache/distill/inception_fid.npz")


def _abstract_model() -> InceptionV3:
  return nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))


def variable_shapes() -> dict[str, tuple[int, ...]]:
  """Flat '/'-joined NNX path -> shape, for every InceptionV3 variable (traced abstractly, nothing initialised)."""
  return weights_file.variable_shapes(_abstract_model())


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


def convert(pth_path: str, out_npz: str, *, check_hash: bool = True) -> dict:
  """Convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth to the .npz that `load_inception` reads.

  Checks that the file's SHA-256 starts with OFFICIAL_SHA256_PREFIX unless check_hash is False. Returns the
  metadata written (see `distill.weights_file.save_weights`).
  """
  obtain = f"obtain {OFFICIAL_PTH} from pytorch-fid's release ({OFFICIAL_URL})"
  state_dict = weights_file.torch_state_dict(pth_path, "FID Inception", obtain)
  source_sha256 = weights_file.file_sha256(pth_path)
  if check_hash and not source_sha256.startswith(OFFICIAL_SHA256_PREFIX):
    raise UserError(f"{pth_path} has SHA-256 {source_sha256[:16]}..., not the official {OFFICIAL_SHA256_PREFIX}...; "
                    f"{obtain}")
  try:
    arrays = state_dict_to_arrays(state_dict)
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
  return weights_file.load_into(_abstract_model(), path, "InceptionV3", "convert the weights again")


__all__ = [
    "FORMAT_VERSION", "METADATA_KEY", "OFFICIAL_PTH", "OFFICIAL_SHA256_PREFIX", "OFFICIAL_URL", "convert", "default_weights_path", "load_inception",
    "save_weights", "state_dict_to_arrays", "variable_shapes", "weights_sha256",
]

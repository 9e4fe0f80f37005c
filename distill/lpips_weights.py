"""LPIPS(VGG) weights: one-time conversion of torchvision's VGG16 and LPIPS v0.1's linear layers to one .npz, and
loading it as a frozen per-sample distance for training losses.

Sources (nothing is downloaded here; torch is needed only by `convert`):
- VGG16: torchvision's `vgg16-397923af.pth` (VGG16_URL); only `features.*` is kept.
- LPIPS linear layers: `lpips/weights/v0.1/vgg.pth` of richzhang/PerceptualSimilarity (LIN_URL).
The .npz format and its checks are distill/weights_file.py's; the model is models/lpips.py.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from flax import nnx

from distill import weights_file
from distill.errors import UserError
from models.lpips import LPIPS, VGG16_CHANNELS, VGG16_SLICES

VGG16_PTH = "vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"  # torch-hub convention: the file name's suffix starts the file's SHA-256.
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_PTH}"
LIN_PTH = "vgg.pth"
LIN_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth"
ENV_VAR = "DISTILL_LPIPS_WEIGHTS"
OBTAIN = (f"obtain torchvision's {VGG16_PTH} ({VGG16_URL}) and LPIPS v0.1's {LIN_PTH} ({LIN_URL}) and run "
          "`distill lpips-weights --vgg <vgg16.pth> --lin <vgg.pth> --out {path}`")


def default_weights_path() -> str:
  """$DISTILL_LPIPS_WEIGHTS, else ~/.cache/distill/lpips_vgg.npz."""
  return os.environ.get(ENV_VAR) or os.path.expanduser("~/.cache/distill/lpips_vgg.npz")


def _abstract_model(resize: int = 0) -> LPIPS:
  return nnx.eval_shape(lambda: LPIPS(resize=resize, rngs=nnx.Rngs(0)))


def state_dicts_to_arrays(vgg: dict[str, np.ndarray], lin: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """torchvision VGG16 and LPIPS v0.1 linear-layer state dicts (numpy) -> {NNX variable path: float32 array}.

  Raises ValueError naming missing keys and mismatched shapes.
  """
  arrays, missing = {}, []
  for index in (i for indices in VGG16_SLICES for i in indices):
    for leaf, name in (("weight", "kernel"), ("bias", "bias")):
      key = f"features.{index}.{leaf}"
      if key not in vgg:
        missing.append(key)
        continue
      value = np.asarray(vgg[key], np.float32)
      arrays[f"features_{index}/{name}"] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
  for layer, channels in enumerate(VGG16_CHANNELS):
    key = f"lin{layer}.model.1.weight"
    if key not in lin:
      missing.append(key)
      continue
    value = np.asarray(lin[key], np.float32)
    if value.shape != (1, channels, 1, 1):
      raise ValueError(f"{key}: shape {value.shape}, LPIPS expects (1, {channels}, 1, 1)")
    arrays[f"lin{layer}/kernel"] = value.reshape(channels, 1)
  if missing:
    raise ValueError(f"not the VGG16 / LPIPS v0.1 state dicts: missing keys {missing}")
  expected = weights_file.variable_shapes(_abstract_model())
  for name, value in arrays.items():
    if value.shape != expected[name]:
      raise ValueError(f"{name}: shape {value.shape} in the state dict, the model expects {expected[name]}")
  return {name: np.ascontiguousarray(value) for name, value in arrays.items()}


def convert(vgg_pth: str, lin_pth: str, out_npz: str, *, check_hash: bool = True) -> dict:
  """Convert the two .pth files to the .npz that `load_lpips` reads; returns the metadata written."""
  obtain = OBTAIN.format(path=out_npz)
  vgg = weights_file.torch_state_dict(vgg_pth, "VGG16", obtain)
  lin = weights_file.torch_state_dict(lin_pth, "LPIPS", obtain)
  vgg_sha256 = weights_file.file_sha256(vgg_pth)
  if check_hash and not vgg_sha256.startswith(VGG16_SHA256_PREFIX):
    raise UserError(f"{vgg_pth} has SHA-256 {vgg_sha256[:16]}..., not torchvision's {VGG16_SHA256_PREFIX}...; "
                    f"{obtain}")
  try:
    arrays = state_dicts_to_arrays(vgg, lin)
  except ValueError as e:
    raise UserError(f"{vgg_pth} + {lin_pth}: {e}") from None
  return weights_file.save_weights(arrays, out_npz, vgg_file=os.path.basename(vgg_pth), vgg_sha256=vgg_sha256,
                                   lin_file=os.path.basename(lin_pth), lin_sha256=weights_file.file_sha256(lin_pth))


def load_lpips(path: str | None = None, resize: int = 0) -> tuple[LPIPS, dict]:
  """(LPIPS filled from the converted .npz at path or `default_weights_path()`, its metadata)."""
  path = path or default_weights_path()
  if not os.path.isfile(path):
    raise UserError(f"LPIPS weights not found at {path}: " + OBTAIN.format(path=path))
  return weights_file.load_into(_abstract_model(resize), path, "LPIPS(VGG16)",
                                "convert the weights again with `distill lpips-weights`")


@dataclasses.dataclass(frozen=True, eq=False)
class LPIPSDistance:
  """A frozen LPIPS as a pure function of two (B, H, W, C) batches -> (B,); its weights are jit constants."""

  graphdef: Any
  state: Any

  def __call__(self, a, b):
    return nnx.merge(self.graphdef, self.state)(a, b)


def load_lpips_distance(path: str, resize: int = 0) -> LPIPSDistance:
  model, _ = load_lpips(path, resize)
  return LPIPSDistance(*nnx.split(model))

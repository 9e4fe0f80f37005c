"""Image value ranges: uint8 pixels [0, 255] <-> the model's float range [-1, 1] (EDM's convention)."""

import numpy as np


def to_float(images_uint8) -> np.ndarray:
  """uint8 images -> float32 in [-1, 1]: x / 127.5 - 1 (0 -> -1, 255 -> 1)."""
  return np.asarray(images_uint8, np.float32) / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
  """Float images in [-1, 1] -> uint8 exactly as EDM does: clip(x * 127.5 + 128, 0, 255) truncated, which equals
  rounding x * 127.5 + 127.5 half-up (-1 -> 0, 0 -> 128, 1 -> 255); values outside [-1, 1] saturate."""
  return np.clip(np.asarray(x) * 127.5 + 128, 0, 255).astype(np.uint8)

"""LPIPS v0.1 with VGG16 features (Zhang et al. 2018, the `lpips` package's `LPIPS(net='vgg')`) in Flax NNX.

d(x0, x1) = sum_l mean_{h,w} w_l . (n(f_l(x0)) - n(f_l(x1)))^2, where f_l are torchvision VGG16's relu1_2, relu2_2,
relu3_3, relu4_3 and relu5_3 activations of the input after the LPIPS scaling layer ((x - shift) / scale), n divides
each feature vector by its L2 norm (+1e-10) and w_l >= 0 are the learned linear weights (one 1x1 conv per layer).
Images are NHWC in [-1, 1] with 1 or 3 channels (grayscale is repeated to RGB); `resize` > 0 first resizes them
bilinearly (half-pixel centres) to resize x resize, as consistency models do with 224. Variables carry torchvision's
layer indices: `features.0.weight` is `features_0/kernel` here (OIHW -> HWIO), LPIPS' `lin0.model.1.weight` is
`lin0/kernel` (1, C, 1, 1) -> (C, 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# torchvision vgg16.features indices of the convolutions, grouped by the LPIPS slice that ends in the tapped ReLU;
# each slice after the first starts with a 2x2 max pool.
VGG16_SLICES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
VGG16_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _max_pool_2x2(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _unit_normalize(f, eps: float = 1e-10):
  return f / (jnp.sqrt(jnp.sum(f**2, axis=-1, keepdims=True)) + eps)


class LPIPS(nnx.Module):
  """Per-sample LPIPS distance between two image batches (see the module docstring)."""

  def __init__(self, *, resize: int = 0, rngs: nnx.Rngs):
    self.resize = resize
    c_in = 3
    for indices, c_out in zip(VGG16_SLICES, VGG16_CHANNELS):
      for index in indices:
        setattr(self, f"features_{index}", nnx.Conv(c_in, c_out, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs))
        c_in = c_out
    for layer, c in enumerate(VGG16_CHANNELS):
      setattr(self, f"lin{layer}", nnx.Linear(c, 1, use_bias=False, rngs=rngs))

  def _prepare(self, x):
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
      raise ValueError(f"LPIPS needs images with 1 or 3 channels, got shape {x.shape}")
    if self.resize and x.shape[1:3] != (self.resize, self.resize):
      x = jax.image.resize(x, (x.shape[0], self.resize, self.resize, 3), "bilinear", antialias=False)
    if min(x.shape[1:3]) < 16:
      raise ValueError(f"LPIPS(VGG) needs images of at least 16 x 16 (four 2x2 max pools), got {x.shape[1:3]}; "
                       "set objective.lpips_resize")
    return (x - jnp.asarray(SHIFT, x.dtype)) / jnp.asarray(SCALE, x.dtype)

  def features(self, x) -> list:
    """The five tapped VGG16 activations of images x (N, H, W, 1 or 3) in [-1, 1]."""
    h, taps = self._prepare(x), []
    for slice_index, indices in enumerate(VGG16_SLICES):
      if slice_index:
        h = _max_pool_2x2(h)
      for index in indices:
        h = jax.nn.relu(getattr(self, f"features_{index}")(h))
      taps.append(h)
    return taps

  def __call__(self, x0, x1):
    """(N,) distances; x0 and x1 have the same shape (N, H, W, C)."""
    if x0.shape != x1.shape:
      raise ValueError(f"LPIPS compares images of one shape, got {x0.shape} and {x1.shape}")
    taps = self.features(jnp.concatenate([x0, x1]))
    total = jnp.zeros((x0.shape[0],), x0.dtype)
    for layer, f in enumerate(taps):
      f0, f1 = jnp.split(_unit_normalize(f), 2)
      total = total + jnp.mean(getattr(self, f"lin{layer}")((f0 - f1) ** 2)[..., 0], axis=(1, 2))
    return total

"""The FID Inception-v3 network (pytorch-fid's `fid_inception_v3`) in Flax NNX, returning pool3 features.

Same structure and arithmetic as pytorch-fid: torchvision's Inception-v3 (no aux head, no dropout, no fc) with
Mixed_5b-5d, 6b-6e, 7b and 7c patched to TensorFlow's behaviour (average pools exclude padding; Mixed_7c's pool is a
max pool). Submodules carry pytorch-fid's names, so `Mixed_5b.branch1x1.conv.weight` in the torch state dict is
`Mixed_5b/branch1x1/conv/kernel` here (OIHW -> HWIO). Images are NHWC; convolutions run at float32 precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_HIGHEST = jax.lax.Precision.HIGHEST


def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nnx.Module):
  """Conv (no bias, explicit symmetric padding as torch) -> BatchNorm (eps 1e-3, running statistics) -> ReLU."""

  def __init__(self, c_in: int, c_out: int, kernel, *, stride=1, padding=0, rngs: nnx.Rngs):
    pad_h, pad_w = _pair(padding)
    self.conv = nnx.Conv(
        c_in, c_out, _pair(kernel), strides=_pair(stride), padding=((pad_h, pad_h), (pad_w, pad_w)),
        use_bias=False, precision=_HIGHEST, rngs=rngs)
    self.bn = nnx.BatchNorm(c_out, use_running_average=True, epsilon=1e-3, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.bn(self.conv(x)))


def avg_pool_3x3_exclude_pad(x):
  """3x3 stride-1 average pool with padding 1 that divides by the number of non-padded inputs.

  torch's `F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)` (TensorFlow's 'SAME' average pool): corners divide
  by 4, edges by 6, the interior by 9. x: (N, H, W, C).
  """
  window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
  return total / count


def _max_pool(x, stride: int, padding: int):
  """3x3 max pool; padded positions never win (torch's implicit -inf padding). x: (N, H, W, C)."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


class FIDInceptionA(nnx.Module):
  """Mixed_5b-5d: torchvision's InceptionA with a padding-excluding average pool."""

  def __init__(self, c_in: int, pool_features: int, *, rngs: nnx.Rngs):
    self.branch1x1 = BasicConv2d(c_in, 64, 1, rngs=rngs)
    self.branch5x5_1 = BasicConv2d(c_in, 48, 1, rngs=rngs)
    self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
    self.branch_pool = BasicConv2d(c_in, pool_features, 1, rngs=rngs)

  def __call__(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
  """Mixed_6a: torchvision's InceptionB (grid reduction 35 -> 17)."""

  def __init__(self, c_in: int, *, rngs: nnx.Rngs):
    self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3(x)
    b3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([b3, b3dbl, _max_pool(x, 2, 0)], axis=-1)


class FIDInceptionC(nnx.Module):
  """Mixed_6b-6e: torchvision's InceptionC with a padding-excluding average pool."""

  def __init__(self, c_in: int, channels_7x7: int, *, rngs: nnx.Rngs):
    c7 = channels_7x7
    self.branch1x1 = BasicConv2d(c_in, 192, 1, rngs=rngs)
    self.branch7x7_1 = BasicConv2d(c_in, c7, 1, rngs=rngs)
    self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch_pool = BasicConv2d(c_in, 192, 1, rngs=rngs)

  def __call__(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    b7dbl = self.branch7x7dbl_1(x)
    for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
      b7dbl = conv(b7dbl)
    bp = self.branch_pool(avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b7, b7dbl, bp], axis=-1)


class InceptionD(nnx.Module):
  """Mixed_7a: torchvision's InceptionD (grid reduction 17 -> 8)."""

  def __init__(self, c_in: int, *, rngs: nnx.Rngs):
    self.branch3x3_1 = BasicConv2d(c_in, 192, 1, rngs=rngs)
    self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1, rngs=rngs)
    self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_1(x)
    for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
      b7 = conv(b7)
    return jnp.concatenate([b3, b7, _max_pool(x, 2, 0)], axis=-1)


class FIDInceptionE(nnx.Module):
  """Mixed_7b (padding-excluding average pool) and Mixed_7c (max pool): torchvision's InceptionE, patched."""

  def __init__(self, c_in: int, *, max_pool: bool, rngs: nnx.Rngs):
    self.max_pool = max_pool
    self.branch1x1 = BasicConv2d(c_in, 320, 1, rngs=rngs)
    self.branch3x3_1 = BasicConv2d(c_in, 384, 1, rngs=rngs)
    self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch_pool = BasicConv2d(c_in, 192, 1, rngs=rngs)

  def __call__(self, x):
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
    b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    b3dbl = jnp.concatenate([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], axis=-1)
    pooled = _max_pool(x, 1, 1) if self.max_pool else avg_pool_3x3_exclude_pad(x)
    return jnp.concatenate([b1, b3, b3dbl, self.branch_pool(pooled)], axis=-1)


class InceptionV3(nnx.Module):
  """pytorch-fid's FID Inception-v3 up to pool3: x (N, H, W, 3) float32 in [-1, 1] -> features (N, 2048) >= 0.

  x is normally `preprocess(images)` (H = W = 299); the network is fully convolutional and accepts any H, W >= 75.
  BatchNorm always uses the stored running statistics.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
    self.Mixed_5b = FIDInceptionA(192, 32, rngs=rngs)
    self.Mixed_5c = FIDInceptionA(256, 64, rngs=rngs)
    self.Mixed_5d = FIDInceptionA(288, 64, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = FIDInceptionC(768, 128, rngs=rngs)
    self.Mixed_6c = FIDInceptionC(768, 160, rngs=rngs)
    self.Mixed_6d = FIDInceptionC(768, 160, rngs=rngs)
    self.Mixed_6e = FIDInceptionC(768, 192, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = FIDInceptionE(1280, max_pool=False, rngs=rngs)
    self.Mixed_7c = FIDInceptionE(2048, max_pool=True, rngs=rngs)

  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32)
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = _max_pool(x, 2, 0)
    x = _max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 2, 0)
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                  self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
      x = block(x)
    return jnp.mean(x, axis=(1, 2))


def preprocess(images, size: int = 299) -> jax.Array:
  """uint8 images (N, H, W, C), C in {1, 3} -> float32 (N, size, size, 3) in [-1, 1], the network's input.

  Maps 0 -> -1 and 255 -> 1 (x / 127.5 - 1), repeats a single channel to RGB, then resizes bilinearly with
  half-pixel centres and no antialiasing, i.e. pytorch-fid's `F.interpolate(..., mode='bilinear',
  align_corners=False)` on x / 255 followed by 2x - 1 (the resize is affine, so the order does not matter).
  Images already size x size are not resampled. Jittable (shapes are static).
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != jnp.uint8:
    raise ValueError(f"expected uint8 images (N, H, W, 1 or 3), got {images.dtype} {images.shape}")
  x = images.astype(jnp.float32) / 127.5 - 1.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bilinear", antialias=False)
  return x


__all__ = ["InceptionV3", "avg_pool_3x3_exclude_pad", "preprocess"]

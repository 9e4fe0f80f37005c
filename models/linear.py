"""Affine network F(x_in) = W x_in + b, blind to the noise level: as a one-step generator at a fixed noise level
its output is an affine map of the input noise, so its samples are exactly Gaussian (distill/gaussian_lab.py)."""

from __future__ import annotations

from flax import nnx

from models import layers


class Linear(nnx.Module):
  """F(x_in, c_noise, labels) = W x_in + b, shape (B, dim); c_noise and labels are ignored (unconditional)."""

  def __init__(self, dim: int = 2, *, rngs: nnx.Rngs):
    self.out = layers.dense(dim, dim, rngs=rngs)

  def __call__(self, x_in, c_noise, labels=None, *, train: bool = False, rng=None):
    del c_noise, labels, train, rng
    return self.out(x_in)

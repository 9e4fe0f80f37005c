"""Residual MLP denoiser for low-dimensional data (2-D toys)."""

from __future__ import annotations

import jax
from flax import nnx

from models import layers


class MLP(nnx.Module):
  """F(x_in, c_noise, labels) -> raw output of shape (B, dim); the caller's parameterisation makes it a denoiser.

  x_in: (B, dim) float; c_noise: (B,) noise-level input; labels: (B,) int32 in [0, num_classes] (num_classes is the
  null label) or None for an unconditional model.
  """

  def __init__(self, dim: int = 2, width: int = 256, depth: int = 3, emb_dim: int = 128, num_classes: int = 0,
               noise_scale: float = 1.0, dropout: float = 0.0, *, rngs: nnx.Rngs):
    self.dropout = dropout
    self.embed = layers.NoiseEmbedding(emb_dim, emb_dim, num_classes, noise_scale, rngs=rngs)
    self.inp = layers.dense(dim, width, rngs=rngs)
    self.hidden = nnx.List([layers.dense(width, width, rngs=rngs) for _ in range(depth)])
    self.emb_proj = nnx.List([layers.dense(emb_dim, width, rngs=rngs) for _ in range(depth)])
    self.hidden_out = nnx.List([layers.dense(width, width, rngs=rngs, init_scale=0.2) for _ in range(depth)])
    self.norm_out = layers.layer_norm(width, rngs=rngs)
    self.out = layers.dense(width, dim, rngs=rngs, init_scale=0.0)

  def __call__(self, x_in, c_noise, labels=None, *, train: bool = False, rng=None):
    emb = self.embed(c_noise, labels)
    h = self.inp(x_in)
    for i, (fc, proj, fc_out) in enumerate(zip(self.hidden, self.emb_proj, self.hidden_out)):
      u = jax.nn.silu(fc(jax.nn.silu(h)) + proj(emb))
      u = layers.dropout(u, self.dropout, None if rng is None else jax.random.fold_in(rng, i), train)
      h = h + fc_out(u)
    return self.out(jax.nn.silu(self.norm_out(h)))

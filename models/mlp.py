"""Residual MLP denoiser for low-dimensional data (2-D toys)."""

from __future__ import annotations

import jax
from flax import nnx

from models import layers


class MLP(nnx.Module):
  """F(x_in, c_noise, labels) -> raw output of shape (B, dim); the caller's parameterisation makes it a denoiser.

  x_in: (B, dim) float; c_noise: (B,) noise-level input; labels: (B,) int32 in [0, num_classes] (num_classes is the
  null label) or None for an unconditional model; for a source-conditioned model (source_channels > 0) the
  (B, source_channels) source instead, concatenated to x_in (layers.with_source).
  """

  def __init__(self, dim: int = 2, width: int = 256, depth: int = 3, emb_dim: int = 128, num_classes: int = 0,
               noise_scale: float = 1.0, dropout: float = 0.0, source_channels: int = 0, *,
               rngs: nnx.Rngs):
    self.dropout, self.source_channels = dropout, source_channels
    self.embed = layers.NoiseEmbedding(emb_dim, emb_dim, num_classes, noise_scale, rngs=rngs)
    self.inp = layers.dense(dim + source_channels, width, rngs=rngs)
    self.hidden = nnx.List([layers.dense(width, width, rngs=rngs) for _ in range(depth)])
    self.emb_proj = nnx.List([layers.dense(emb_dim, width, rngs=rngs) for _ in range(depth)])
    self.hidden_out = nnx.List([layers.dense(width, width, rngs=rngs, init_scale=0.2) for _ in range(depth)])
    self.norm_out = layers.layer_norm(width, rngs=rngs)
    self.out = layers.dense(width, dim, rngs=rngs, init_scale=0.0)

  def __call__(self, x_in, c_noise, labels=None, *, train: bool = False, rng=None):
    x_in, labels = layers.with_source(x_in, labels, self.source_channels)
    emb = self.embed(c_noise, labels)
    h = self.inp(x_in)
    for i in range(len(self.hidden)):
      h = self._block(i, h, emb, train, None if rng is None else jax.random.fold_in(rng, i))
    return self.out(jax.nn.silu(self.norm_out(h)))

  def _block(self, i, h, emb, train=False, rng=None):
    u = jax.nn.silu(self.hidden[i](jax.nn.silu(h)) + self.emb_proj[i](emb))
    return h + self.hidden_out[i](layers.dropout(u, self.dropout, rng, train))

  def feature_names(self) -> tuple[str, ...]:
    """'input' (the first projection) and 'block<i>' (the residual stream after block i), shallow to deep."""
    return ("input",) + tuple(f"block{i}" for i in range(len(self.hidden)))

  def features(self, x_in, c_noise, labels=None, names=()) -> dict:
    """The named activations {name: (B, width)} of an evaluation-mode forward that stops at the deepest one."""
    x_in, labels = layers.with_source(x_in, labels, self.source_channels)
    emb = self.embed(c_noise, labels)
    h = self.inp(x_in)
    out = {"input": h} if "input" in names else {}
    for i in range(len(self.hidden)):
      if len(out) == len(names):
        break
      h = self._block(i, h, emb)
      if f"block{i}" in names:
        out[f"block{i}"] = h
    return out

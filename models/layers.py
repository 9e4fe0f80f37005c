"""Building blocks shared by the networks, with parameters annotated by logical axis names.

Logical names used: 'embed' (input features of dense layers), 'mlp' (output features), 'conv_in' / 'conv_out'
(convolution channels), 'norm' (normalisation scales), 'vocab' (label embeddings). A rules table in the config
maps them to mesh axes (see distill/sharding.py). Images are NHWC.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

_DEFAULT_INIT = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _scaled(init_scale: float):
  """Xavier-uniform initialiser scaled by init_scale (0 gives zeros), as EDM's init_weight."""
  if init_scale == 0.0:
    return nnx.initializers.zeros_init()
  return nnx.initializers.variance_scaling(init_scale**2, "fan_avg", "uniform")


def dense(d_in: int, d_out: int, *, rngs: nnx.Rngs, init_scale: float = 1.0) -> nnx.Linear:
  return nnx.Linear(
      d_in, d_out,
      kernel_init=nnx.with_partitioning(_scaled(init_scale), ("embed", "mlp")),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("mlp",)),
      rngs=rngs)


def conv(c_in: int, c_out: int, kernel: int = 3, *, rngs: nnx.Rngs, stride: int = 1,
         init_scale: float = 1.0) -> nnx.Conv:
  return nnx.Conv(
      c_in, c_out, (kernel, kernel), strides=(stride, stride), padding="SAME",
      kernel_init=nnx.with_partitioning(_scaled(init_scale), (None, None, "conv_in", "conv_out")),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("conv_out",)),
      rngs=rngs)


def group_norm(channels: int, *, rngs: nnx.Rngs) -> nnx.GroupNorm:
  """GroupNorm with EDM's group count min(32, channels // 4) and eps 1e-6."""
  return nnx.GroupNorm(
      channels, num_groups=min(32, max(1, channels // 4)), epsilon=1e-6,
      scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("norm",)),
      rngs=rngs)


def layer_norm(features: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(
      features,
      scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("norm",)),
      rngs=rngs)


def label_embedding(num_classes: int, dim: int, *, rngs: nnx.Rngs) -> nnx.Embed:
  """Embeds labels 0..num_classes-1 plus the null label num_classes (used by classifier-free guidance)."""
  return nnx.Embed(
      num_classes + 1, dim,
      embedding_init=nnx.with_partitioning(nnx.initializers.normal(1.0), ("vocab", "mlp")),
      rngs=rngs)


def positional_embedding(c_noise: jax.Array, dim: int, max_positions: int = 10000) -> jax.Array:
  """EDM/DDPM++ sinusoidal embedding of a (B,) noise input -> (B, dim) as [cos, sin]."""
  half = dim // 2
  freqs = (1.0 / max_positions) ** (jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
  angles = c_noise.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def dropout(x: jax.Array, rate: float, rng: jax.Array | None, train: bool) -> jax.Array:
  """Inverted dropout; identity unless training with rate > 0 and an rng."""
  if not train or rate == 0.0 or rng is None:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def with_source(x_in: jax.Array, cond, source_channels: int):
  """(network input, labels) of a model's forward: a source-conditioned model (source_channels > 0, image
  restoration) takes `cond` as the source, shaped like x_in with source_channels last-axis channels, concatenated
  to x_in, and has no labels; any other model passes x_in through and `cond` on as its labels."""
  if not source_channels:
    return x_in, cond
  if cond is None or cond.shape[:-1] != x_in.shape[:-1] or cond.shape[-1] != source_channels:
    raise ValueError(f"this model is source-conditioned: pass the source, shaped {x_in.shape[:-1]} x "
                     f"{source_channels}, as cond (got {None if cond is None else cond.shape})")
  return jnp.concatenate([x_in, cond.astype(x_in.dtype)], axis=-1), None


class NoiseEmbedding(nnx.Module):
  """c_noise (and optional label) -> conditioning vector: sinusoidal -> dense -> SiLU -> dense (+ label emb)."""

  def __init__(self, base_dim: int, emb_dim: int, num_classes: int, noise_scale: float, *, rngs: nnx.Rngs):
    self.base_dim = base_dim
    self.noise_scale = noise_scale
    self.fc1 = dense(base_dim, emb_dim, rngs=rngs)
    self.fc2 = dense(emb_dim, emb_dim, rngs=rngs)
    self.labels = label_embedding(num_classes, emb_dim, rngs=rngs) if num_classes else None

  def __call__(self, c_noise: jax.Array, labels: jax.Array | None) -> jax.Array:
    # sinusoids of a float32 c_noise, then the parameters' dtype (bfloat16 under mixed precision)
    emb = positional_embedding(c_noise * self.noise_scale, self.base_dim).astype(self.fc1.kernel.dtype)
    emb = self.fc2(jax.nn.silu(self.fc1(emb)))
    if self.labels is not None:
      if labels is None:
        raise ValueError("this model is class-conditional: pass labels (use num_classes for the null label)")
      emb = emb + self.labels(labels)
    return jax.nn.silu(emb)

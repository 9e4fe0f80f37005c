"""U-Net in the DDPM++ / EDM style (Song et al. 2021; Karras et al. 2022), NHWC.

Encoder: per level `num_blocks` residual blocks (+ self-attention at `attn_resolutions`) then a strided-conv
downsample; decoder: `num_blocks + 1` residual blocks per level consuming the encoder skips, nearest-neighbour
upsample + conv. Residual and attention outputs are scaled by 1/sqrt(2) (DDPM++ skip scale); output convs of each
residual branch and of the network start at zero so a fresh network is the parameterisation's identity-like map.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from models import layers

_SKIP_SCALE = 1.0 / math.sqrt(2.0)


class ResBlock(nnx.Module):
  def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, *, rngs: nnx.Rngs):
    self.dropout = dropout
    self.norm0 = layers.group_norm(c_in, rngs=rngs)
    self.conv0 = layers.conv(c_in, c_out, rngs=rngs)
    self.affine = layers.dense(emb_dim, c_out, rngs=rngs)
    self.norm1 = layers.group_norm(c_out, rngs=rngs)
    self.conv1 = layers.conv(c_out, c_out, rngs=rngs, init_scale=1e-5)
    self.skip = layers.conv(c_in, c_out, 1, rngs=rngs) if c_in != c_out else None

  def __call__(self, x, emb, train: bool, rng):
    h = self.conv0(jax.nn.silu(self.norm0(x)))
    h = h + self.affine(emb)[:, None, None, :]
    h = layers.dropout(jax.nn.silu(self.norm1(h)), self.dropout, rng, train)
    h = self.conv1(h)
    skip = x if self.skip is None else self.skip(x)
    return (h + skip) * _SKIP_SCALE


class Attention(nnx.Module):
  """Multi-head self-attention over the H*W positions (heads of 64 channels, at least one)."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.heads = max(1, channels // 64)
    self.norm = layers.group_norm(channels, rngs=rngs)
    self.qkv = layers.conv(channels, 3 * channels, 1, rngs=rngs)
    self.proj = layers.conv(channels, channels, 1, rngs=rngs, init_scale=1e-5)

  def __call__(self, x):
    b, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 3 * c), 3, axis=-1)
    split = lambda t: t.reshape(b, h * w, self.heads, c // self.heads)
    out = jax.nn.dot_product_attention(split(q), split(k), split(v))
    return (x + self.proj(out.reshape(b, h, w, c))) * _SKIP_SCALE


class UNet(nnx.Module):
  """F(x_in, c_noise, labels) -> (B, H, W, C_out).

  x_in: (B, H, W, C) float; c_noise: (B,); labels: (B,) int32 in [0, num_classes] (num_classes = null label for
  classifier-free guidance) or None for an unconditional model; for a source-conditioned model (source_channels >
  0) the (B, H, W, source_channels) source instead, concatenated to x_in as extra input channels
  (layers.with_source). Resolutions must divide by 2**(levels-1).
  """

  def __init__(self, resolution: int = 28, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 64),
               num_blocks: int = 2, attn_resolutions: tuple[int, ...] = (), dropout: float = 0.0,
               num_classes: int = 0, noise_scale: float = 1.0, source_channels: int = 0, *, rngs: nnx.Rngs):
    channels = tuple(channels)
    self.source_channels = source_channels
    attn_resolutions = tuple(attn_resolutions)
    emb_dim = 4 * channels[0]
    self.num_levels, self.num_blocks = len(channels), num_blocks
    self.embed = layers.NoiseEmbedding(channels[0], emb_dim, num_classes, noise_scale, rngs=rngs)
    self.conv_in = layers.conv(in_channels + source_channels, channels[0], rngs=rngs)

    enc, enc_attn, skip_channels = [], [], [channels[0]]
    c_prev, res = channels[0], resolution
    for level, c in enumerate(channels):
      for _ in range(num_blocks):
        enc.append(ResBlock(c_prev, c, emb_dim, dropout, rngs=rngs))
        enc_attn.append(Attention(c, rngs=rngs) if res in attn_resolutions else None)
        c_prev = c
        skip_channels.append(c)
      if level < self.num_levels - 1:
        enc.append(layers.conv(c, c, rngs=rngs, stride=2))
        enc_attn.append(None)
        skip_channels.append(c)
        res //= 2
    self.enc, self.enc_attn = nnx.List(enc), nnx.List(enc_attn)

    self.mid0 = ResBlock(c_prev, c_prev, emb_dim, dropout, rngs=rngs)
    self.mid_attn = Attention(c_prev, rngs=rngs)
    self.mid1 = ResBlock(c_prev, c_prev, emb_dim, dropout, rngs=rngs)

    dec, dec_attn = [], []
    for level in reversed(range(self.num_levels)):
      c = channels[level]
      for _ in range(num_blocks + 1):
        dec.append(ResBlock(c_prev + skip_channels.pop(), c, emb_dim, dropout, rngs=rngs))
        dec_attn.append(Attention(c, rngs=rngs) if res in attn_resolutions else None)
        c_prev = c
      if level > 0:
        dec.append(layers.conv(c, c, rngs=rngs))
        dec_attn.append(None)
        res *= 2
    self.dec, self.dec_attn = nnx.List(dec), nnx.List(dec_attn)
    self.norm_out = layers.group_norm(c_prev, rngs=rngs)
    self.conv_out = layers.conv(c_prev, in_channels, rngs=rngs, init_scale=1e-5)

  def __call__(self, x_in, c_noise, labels=None, *, train: bool = False, rng=None):
    x_in, labels = layers.with_source(x_in, labels, self.source_channels)
    emb = self.embed(c_noise, labels)
    keys = iter(jax.random.split(rng, len(self.enc) + len(self.dec) + 2)) if rng is not None else None
    next_key = lambda: None if keys is None else next(keys)

    h = self.conv_in(x_in)
    skips = [h]
    for block, attn in zip(self.enc, self.enc_attn):
      h = block(h, emb, train, next_key()) if isinstance(block, ResBlock) else block(h)
      if attn is not None:
        h = attn(h)
      skips.append(h)
    h = self.mid1(self.mid_attn(self.mid0(h, emb, train, next_key())), emb, train, next_key())
    for block, attn in zip(self.dec, self.dec_attn):
      if isinstance(block, ResBlock):
        h = block(jnp.concatenate([h, skips.pop()], axis=-1), emb, train, next_key())
      else:  # upsample: nearest neighbour x2 then conv
        h = block(jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2))
      if attn is not None:
        h = attn(h)
    return self.conv_out(jax.nn.silu(self.norm_out(h)))

  def feature_names(self) -> tuple[str, ...]:
    """'level<i>' (the encoder's output at level i, before downsampling; resolution / 2**i) and 'mid' (after the
    middle block), shallow to deep."""
    return tuple(f"level{i}" for i in range(self.num_levels)) + ("mid",)

  def features(self, x_in, c_noise, labels=None, names=()) -> dict:
    """The named activations {name: (B, H_l, W_l, C_l)} of an evaluation-mode forward of the encoder (and middle
    block) that stops at the deepest one."""
    x_in, labels = layers.with_source(x_in, labels, self.source_channels)
    emb = self.embed(c_noise, labels)
    h = self.conv_in(x_in)
    out, level, blocks_done = {}, 0, 0
    for block, attn in zip(self.enc, self.enc_attn):
      if not isinstance(block, ResBlock):  # downsample to the next level
        h, level, blocks_done = block(h), level + 1, 0
        continue
      h = block(h, emb, False, None)
      h = h if attn is None else attn(h)
      blocks_done += 1
      if blocks_done == self.num_blocks and f"level{level}" in names:
        out[f"level{level}"] = h
      if len(out) == len(names):
        return out
    out["mid"] = self.mid1(self.mid_attn(self.mid0(h, emb, False, None)), emb, False, None)
    return out

"""Small discriminator heads on frozen feature maps (Projected GAN / NitroFusion style), stacked into pools by
distill/pool.py. Parameters carry no sharding annotations: a pool is replicated on every device."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

SCOPES = ("global", "local")


class DiscriminatorHead(nnx.Module):
  """logits = head(u, labels).

  u: (B, H, W, C) feature map (`spatial`) or (B, C) feature vector; labels: (B,) int32, used only by a conditional
  head (num_classes > 0). Body: 3x3 conv (a dense layer for vectors) -> GroupNorm (LayerNorm) -> SiLU, giving
  h (..., hidden). A global head averages h over positions and returns one logit per example (B,); a local head
  returns one logit per position (B, H, W). Conditional heads add the projection term <h, E[label]> / sqrt(hidden).
  """

  def __init__(self, in_channels: int, hidden: int = 64, *, spatial: bool, scope: str = "global",
               num_classes: int = 0, rngs: nnx.Rngs):
    if scope not in SCOPES:
      raise ValueError(f"unknown head scope {scope!r}; choose one of {', '.join(SCOPES)}")
    if scope == "local" and not spatial:
      raise ValueError("a local (per-position) head needs spatial feature maps; this layer's features are vectors")
    self.spatial, self.local, self.hidden = spatial, scope == "local", hidden
    if spatial:
      self.body = nnx.Conv(in_channels, hidden, (3, 3), padding="SAME", rngs=rngs)
      self.norm = nnx.GroupNorm(hidden, num_groups=min(32, max(1, hidden // 4)), epsilon=1e-6, rngs=rngs)
    else:
      self.body = nnx.Linear(in_channels, hidden, rngs=rngs)
      self.norm = nnx.LayerNorm(hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 1, rngs=rngs)
    self.embed = nnx.Embed(num_classes, hidden, rngs=rngs) if num_classes else None

  def __call__(self, u, labels=None):
    h = jax.nn.silu(self.norm(self.body(u)))
    if self.spatial and not self.local:
      h = jnp.mean(h, axis=(1, 2))
    logits = self.out(h)[..., 0]
    if self.embed is not None:
      e = self.embed(labels).reshape((h.shape[0],) + (1,) * (h.ndim - 2) + (self.hidden,))
      logits = logits + jnp.sum(h * e, axis=-1) / math.sqrt(self.hidden)
    return logits

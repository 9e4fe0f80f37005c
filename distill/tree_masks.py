"""Selecting between two pytrees by a mask over a prefix of their leading axes (masked updates, re-initialisation).

A mask is a pytree prefix of the trees it selects in, with boolean leaves of shape (K,) or (K1, K2, ...) matching the
leading axes of every leaf below it; it broadcasts over each leaf's remaining axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def broadcast_mask(mask, tree):
  """`mask` expanded to every leaf of `tree`, shaped to broadcast against it."""
  expand = lambda m, sub: jax.tree.map(lambda x: m.reshape(m.shape + (1,) * (x.ndim - m.ndim)), sub)
  return jax.tree.map(expand, mask, tree)


def select(mask, new, old):
  """`new` where the mask is True, `old` elsewhere."""
  return jax.tree.map(lambda m, n, o: jnp.where(m, n, o), broadcast_mask(mask, new), new, old)

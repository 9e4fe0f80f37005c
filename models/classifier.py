"""A small CNN image classifier whose penultimate activations serve as a domain-specific FID feature space.

Input: NHWC float32 images in [-1, 1] of the fixed `input_shape` (H, W, C). 3x3 convs with ReLU (the first at
stride 1, the rest at stride 2), flattened (spatial layout matters for digits), a `feature_dim` hidden layer with
ReLU (the features) and a linear head (the logits).
"""

from __future__ import annotations

import math

import jax
from flax import nnx


class Classifier(nnx.Module):
  """`__call__(x) -> (features (N, feature_dim), logits (N, num_classes))`."""

  def __init__(self, input_shape, num_classes: int, *, channels=(32, 64, 64), feature_dim: int = 128,
               rngs: nnx.Rngs):
    if num_classes < 2:
      raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    height, width, in_channels = input_shape
    widths = (in_channels,) + tuple(channels)
    self.convs = nnx.List([
        nnx.Conv(widths[i], widths[i + 1], (3, 3), strides=(1 if i == 0 else 2), padding="SAME", rngs=rngs)
        for i in range(len(channels))
    ])
    downsample = 2**(len(channels) - 1)
    flat = math.ceil(height / downsample) * math.ceil(width / downsample) * widths[-1]
    self.hidden = nnx.Linear(flat, feature_dim, rngs=rngs)
    self.head = nnx.Linear(feature_dim, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    features = jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1)))
    return features, self.head(features)

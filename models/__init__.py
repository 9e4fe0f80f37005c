"""Network definitions (Flax NNX). `build(name, rngs=..., **kwargs)` constructs one from a config."""

from models.linear import Linear
from models.mlp import MLP
from models.unet import UNet

REGISTRY = {"linear": Linear, "mlp": MLP, "unet": UNet}


def build(name: str, *, rngs, **kwargs):
  """Construct the registered network `name` with keyword arguments from the config."""
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(REGISTRY)}")
  return REGISTRY[name](rngs=rngs, **kwargs)

"""Stand-in networks for objective tests (imported by the test modules; pytest puts tests/ on sys.path)."""

import jax.numpy as jnp


class ConstantFlow:
  """A 'network' whose velocity is the constant c everywhere (a perfectly straight flow)."""

  model_kwargs = {}

  def __init__(self, c):
    self.c = c

  def velocity(self, params, x, t, cond=None, **kwargs):
    del params, t, cond, kwargs
    return jnp.broadcast_to(self.c, x.shape)

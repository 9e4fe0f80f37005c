"""Stand-in networks for objective tests (imported by the test modules; pytest puts tests/ on sys.path)."""

import jax.numpy as jnp


class AnalyticNetwork:
  """An exact denoiser (distill/analytic.py) in the place of a trained network (no parameters)."""

  model_kwargs = {}

  def __init__(self, denoise):
    self._denoise = denoise

  def denoise(self, params, x, sigma, cond=None, **kwargs):
    del params, kwargs
    return self._denoise(x, sigma, cond)

  def velocity(self, params, x_rf, t, cond=None, **kwargs):
    del params, kwargs
    import samplers

    return samplers.rf_velocity(self._denoise, cond)(x_rf, t)


class ConstantFlow:
  """A 'network' whose velocity is the constant c everywhere (a perfectly straight flow)."""

  model_kwargs = {}

  def __init__(self, c):
    self.c = c

  def velocity(self, params, x, t, cond=None, **kwargs):
    del params, t, cond, kwargs
    return jnp.broadcast_to(self.c, x.shape)

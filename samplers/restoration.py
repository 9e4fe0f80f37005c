"""Restoring with a source-conditioned flow (OFTSR, distill/objectives/restoration.py): RF time, the source x0 at t = 0,
the clean sample at t = 1, everything in the model's data space (images in [-1, 1]).

A bundle's 'restoration' section names the degradation (distill/restoration.py) and the sampler:
  'flow'      the teacher: Euler over `steps` uniform steps of [0, 1] from x0 (one step: x0 + v(x0, 0), the
              teacher's MMSE-like one-step estimate);
  'one_step'  the OFTSR student: x0 + (1 - eps) u(x0, knob) in one evaluation, knob in [t_min, t_max] sliding from
              fidelity (small) to realism (large).
Example i of a call uses the keys fold_in(key, first_index + i), for its measurement noise and for its source, so
results do not depend on the batch size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from distill.errors import UserError
from distill.restoration import ONE_STEP_EPS, degradation_from_config
from samplers.sampling import sample_keys

SAMPLERS = ("flow", "one_step")
DEFAULT_KNOB = 0.99  # the realism end: the official one_step_t and OFTSR's default t_max
CHUNK = 500


class Restorer:
  """observe(key, x) -> y~ and restore(params, key, y~, steps, knob) -> x_hat, numpy float32 in data space."""

  def __init__(self, network, section: dict, default_steps: int):
    self.network, self.default_steps = network, default_steps
    self.degradation = degradation_from_config(section)
    self.sampler = section["sampler"]
    if self.sampler not in SAMPLERS:
      raise UserError(f"unknown restoration sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")

  def observe(self, key, x, first_index: int = 0) -> np.ndarray:
    """The lifted measurements y~ of clean samples x (B, ...)."""
    return self._chunked(self._observe, key, np.asarray(x, np.float32), first_index)

  def restore(self, params, key, observed, steps: int | None = None, knob: float | None = None,
              first_index: int = 0) -> np.ndarray:
    """Restorations of lifted measurements y~ (B, ...): the flow with `steps` Euler steps (default: the bundle's),
    or the one-step student at time `knob` (default DEFAULT_KNOB)."""
    if self.sampler == "one_step":
      if steps not in (None, 1):
        raise UserError(f"an OFTSR student restores in one step (got steps={steps}); tune it with knob instead")
      knob = DEFAULT_KNOB if knob is None else float(knob)
      if not 0.0 <= knob <= 1.0:
        raise UserError(f"knob must lie in [0, 1], got {knob}")
      run = functools.partial(self._one_step, params, jnp.float32(knob))
    else:
      if knob is not None:
        raise UserError("knob tunes an OFTSR student; a restoration teacher takes steps")
      run = functools.partial(self._flow, params, int(steps or self.default_steps))
    return self._chunked(run, key, np.asarray(observed, np.float32), first_index)

  @staticmethod
  def _chunked(fn, key, a: np.ndarray, first_index: int) -> np.ndarray:
    out = []
    for start in range(0, len(a), CHUNK):
      keys = sample_keys(key, np.arange(first_index + start, first_index + min(start + CHUNK, len(a))))
      out.append(np.asarray(fn(keys, jnp.asarray(a[start:start + CHUNK]))))
    return np.concatenate(out).astype(np.float32)

  @functools.partial(jax.jit, static_argnums=0)
  def _observe(self, keys, x):
    return jax.vmap(lambda k, xi: self.degradation.observe(xi[None], jax.random.fold_in(k, 0))[0])(keys, x)

  def _sources(self, keys, y_tilde):
    return jax.vmap(lambda k, yi: self.degradation.source(yi[None], jax.random.fold_in(k, 1))[0])(keys, y_tilde)

  @functools.partial(jax.jit, static_argnums=(0, 2))
  def _flow(self, params, steps, keys, y_tilde):
    x = self._sources(keys, y_tilde)
    for k in range(steps):
      t = jnp.full(x.shape[:1], k / steps, jnp.float32)
      x = x + self.network.velocity(params, x, t, y_tilde) / steps
    return x

  @functools.partial(jax.jit, static_argnums=0)
  def _one_step(self, params, knob, keys, y_tilde):
    x0 = self._sources(keys, y_tilde)
    return x0 + (1.0 - ONE_STEP_EPS) * self.network.velocity(params, x0, jnp.full(x0.shape[:1], knob), y_tilde)

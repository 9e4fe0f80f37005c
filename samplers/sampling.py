"""Batch- and device-independent sampling: randomness is derived per global sample index."""
import jax
import jax.numpy as jnp
import numpy as np

from samplers.ode import SOLVERS
from samplers.student import multistep_student


def sample_keys(key, indices):
  """One key per sample: fold_in(key, i) for each global int32 index i. Returns (B,) keys."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices, jnp.int32))


def initial_noise(keys, shape):
  """(B, *shape) standard normals; row i from normal(fold_in(keys[i], 0), shape)."""
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), shape))(keys)


def renoise(keys, k, shape):
  """(B, *shape) standard normals for the student's k-th re-noise draw (fold_in(keys[i], k+1))."""
  return jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, k + 1), shape))(keys)


def solve(denoise, key, indices, shape, sigmas, solver="heun", cond=None):
  """Draw float32 (B, *shape) samples for global sample `indices`, integrating from sigmas[0] to the end.

    x = sigmas[0] * initial_noise, then SOLVERS[solver]; solver="student" runs multistep_student
    with renoise draws (its sigmas must then be concrete, e.g. a numpy grid).
    """
  keys = sample_keys(key, indices)
  renoises = None
  if solver == "student":
    renoises = jax.vmap(lambda k: renoise(keys, k, shape))(jnp.arange(num_renoise(sigmas)))
  return solve_from_noise(denoise, initial_noise(keys, shape), sigmas, solver, cond, renoises)


def num_renoise(sigmas) -> int:
  """Fresh noise draws the student sampler takes on a grid: one per level after the first (a trailing 0 is no
  level)."""
  levels = np.asarray(sigmas, np.float32)
  return len(levels[:-1] if levels[-1] == 0 else levels) - 1


def solve_from_noise(denoise, noise, sigmas, solver="heun", cond=None, renoises=None):
  """`solve` from given standard normals: noise (B, *shape) and, for solver="student", renoises
  (num_renoise(sigmas), B, *shape). Returns float32 (B, *shape)."""
  if solver == "student":
    levels = np.asarray(sigmas, np.float32)
    levels = levels[:-1] if levels[-1] == 0 else levels
    renoises = jnp.zeros((0, *noise.shape), noise.dtype) if renoises is None else renoises  # one level: no draws
    out = multistep_student(denoise, levels[0] * noise, levels, renoises, cond)
  elif solver in SOLVERS:
    sigmas = jnp.asarray(sigmas, jnp.float32)
    out = SOLVERS[solver](denoise, sigmas[0] * noise, sigmas, cond)
  else:
    raise ValueError(f"unknown solver {solver!r}; valid: {', '.join([*SOLVERS, 'student'])}")
  return out.astype(jnp.float32)

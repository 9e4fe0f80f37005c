"""Straightness of a flow (Liu et al. 2022; spec §1.1), discretised on the Euler grid that produced the paths.

RF coordinates throughout: t increases from noise (t = 0) to data (t = 1); velocity_fn(x_rf, t) takes a scalar t.
"""
import jax
import jax.numpy as jnp


def straightness(velocity_fn, z, t_grid):
  """Euler-discretised straightness S = sum_i w_i mean_b ||c_b - v_i,b||^2 / D and the Euler endpoint Z1.

    Euler runs from x = z at t_grid[0] over the increasing grid t_0 < ... < t_N (e.g. eps to 1), with
    v_i = velocity_fn(x_i, t_i) for i < N and Z1 = x_N. Conventions: c = (Z1 - z) / T is the chord velocity over the
    span T = t_N - t_0 (the spec's Z1 - Z0 for T = 1), w_i = (t_{i+1} - t_i) / T (the spec's 1/N on a uniform grid),
    and ||.||^2 / D is the per-element mean over a sample's D elements, so S is comparable across data sizes.
    S = 0 exactly for constant velocity. Because c is the w-weighted mean of the v_i, S is accumulated with West's
    weighted Welford update: O(B D) memory and no cancellation for nearly straight flows.

    What S does and does not bound: the one-step Euler error over the span is exactly
    ||z + T v_0 - Z1||^2 = T^2 ||v_0 - c||^2 and, by Jensen, <= T^2 sum_i w_i ||v_0 - v_i||^2
    = T^2 (||v_0 - c||^2 + S_b) per sample; S = 0 implies a zero one-step error, but the error is NOT bounded by S
    in general (v_0 alone may differ from c by much).

    Returns (S, Z1): a scalar and an array like z.
    """
  t_grid = jnp.asarray(t_grid, z.dtype)
  span = t_grid[-1] - t_grid[0]

  def step(carry, times):
    x, weight, mean, sq = carry
    t, t_next = times
    v = velocity_fn(x, t)
    w = (t_next - t) / span
    weight = weight + w
    delta = v - mean
    mean = mean + (w / weight) * delta
    sq = sq + w * jnp.sum(delta * (v - mean), axis=tuple(range(1, z.ndim)))
    return (x + (t_next - t) * v, weight, mean, sq), None

  init = (z, jnp.zeros((), z.dtype), jnp.zeros_like(z), jnp.zeros(z.shape[0], z.dtype))
  (z1, weight, _, sq), _ = jax.lax.scan(step, init, (t_grid[:-1], t_grid[1:]))
  return jnp.mean(sq / weight) / (z.size // z.shape[0]), z1

"""BOSS phase 1 (Nguyen et al. 2024; spec §4.1): Bellman-optimal Euler step sizes on a fine RF-time grid.

RF coordinates: t increases from noise (t = 0) to data (t = 1); velocity_fn(x_rf, t) takes a scalar t. Node i of
the fine grid t_fine (K_max + 1 increasing times) is time t_fine[i]; a sampler path is a node sequence 0 = i_0 <
... < i_K = K_max, turned into an EDM sigma grid by `bellman_sigmas`. The path cost sums one-jump errors measured
from the reference states, not the K-step sampler's end-point error: on Gaussian data the Bellman grid also has a far
lower end-point error than the uniform one, but on well-separated narrow mixtures it can have a higher one.
"""
import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _jump_cost_row(xs, x_i, v_i, dts):
  """mean_b sum_elements ||x_j - (x_i + dt_j v_i)||^2 for every node j: xs (K+1, B, ...), dts (K+1,)."""
  pred = x_i[None] + dts.reshape((-1,) + (1,) * x_i.ndim) * v_i[None]
  return jnp.mean(jnp.sum(jnp.square(xs - pred).reshape(xs.shape[0], x_i.shape[0], -1), axis=2), axis=1)


def euler_jump_costs(velocity_fn, z, t_fine):
  """Cost matrix c (K_max+1, K_max+1) of single Euler jumps i -> j along reference Euler trajectories.

    Reference: Euler from x_0 = z over t_fine, storing x_j and v_i = velocity_fn(x_i, t_i) (memory (2 K_max + 1) B D).
    c[i, j] = mean over the B samples of sum over elements ||x_j - (x_i + (t_j - t_i) v_i)||^2 for i < j, inf
    elsewhere; c[i, i + 1] = 0 up to rounding. Returns a float64 numpy array.
    """
  t = jnp.asarray(t_fine, z.dtype)

  def step(x, times):
    t_i, t_next = times
    v = velocity_fn(x, t_i)
    return x + (t_next - t_i) * v, (x, v)

  x_last, (xs, vs) = jax.jit(lambda z: jax.lax.scan(step, z, (t[:-1], t[1:])))(z)
  xs = jnp.concatenate([xs, x_last[None]])
  num_nodes = t.shape[0]
  cost = np.full((num_nodes, num_nodes), np.inf)
  for i in range(num_nodes - 1):
    row = np.asarray(_jump_cost_row(xs, xs[i], vs[i], t - t[i]), np.float64)
    cost[i, i + 1:] = row[i + 1:]
  return cost


def bellman_steps(cost, num_steps):
  """Minimum-cost path of exactly `num_steps` jumps from node 0 to the last node K_max (exact DP, O(K K_max^2)).

    V_0 = 0 at K_max and inf elsewhere; V_k(i) = min_{j > i} cost[i, j] + V_{k-1}(j); ties go to the smallest j.
    cost: (K_max+1, K_max+1), used only above the diagonal. Returns (indices, total): int (num_steps + 1,) node
    indices from 0 to K_max and the optimal total cost V_num_steps(0).
    """
  cost = np.asarray(cost, np.float64)
  last = cost.shape[0] - 1
  if not 1 <= num_steps <= last:
    raise ValueError(f"num_steps must be in [1, {last}] for a {last + 1}-node grid, got {num_steps}")
  cost = np.where(np.triu(np.ones_like(cost, bool), k=1), cost, np.inf)
  value = np.full(last + 1, np.inf)
  value[last] = 0.0
  choices = []
  for _ in range(num_steps):
    total = cost + value[None, :]
    choices.append(np.argmin(total, axis=1))
    value = total[np.arange(last + 1), choices[-1]]
  indices = [0]
  for choice in reversed(choices):
    indices.append(int(choice[indices[-1]]))
  return np.asarray(indices), float(value[0])


def bellman_sigmas(t_fine, indices):
  """EDM sigma grid sigma = (1 - t) / t of the path's RF times: float32, decreasing, ending in 0 iff t ends at 1."""
  t = np.asarray(t_fine, np.float64)[np.asarray(indices)]
  return ((1.0 - t) / t).astype(np.float32)

"""Deterministic PF-ODE solvers in the EDM/VE convention.

x_sigma = x0 + sigma * n; dx/dsigma = (x - D(x; sigma)) / sigma. A solver integrates from
sigmas[0] (noise) down the decreasing 1-D grid `sigmas` (which may or may not end in 0).
`denoise(x, sigma, cond) -> x0_hat` with x of shape (B, *shape) and a scalar sigma.
All solvers are jittable: the step loop is a lax.fori_loop over the static grid length ("rk45", the adaptive
Dormand-Prince solver of samplers/adaptive.py with rtol = atol = 1e-5, a lax.while_loop).
"""
import jax
import jax.numpy as jnp
import numpy as np

from samplers.adaptive import rk45_solver


def _num_steps(sigmas):
  return sigmas.shape[0] - 1


def _euler_step(x, denoised, s, s_next):
  """x + (s_next - s) (x - D) / s written as (s_next / s) x + (1 - s_next / s) D: the same value without the
  cancellation of x - D at large sigma (x ~ 1000 for rectified flows), and exactly D when s_next = 0."""
  ratio = s_next / s
  return ratio * x + (1.0 - ratio) * denoised


def euler(denoise, x, sigmas, cond=None):
  """First-order Euler; one evaluation per step. A step into sigma=0 returns D(x; sigma) exactly."""
  sigmas = jnp.asarray(sigmas, x.dtype)

  def step(i, x):
    s, s_next = sigmas[i], sigmas[i + 1]
    return _euler_step(x, denoise(x, s, cond), s, s_next)

  return jax.lax.fori_loop(0, _num_steps(sigmas), step, x)


def heun(denoise, x, sigmas, cond=None):
  """EDM Algorithm 1 (deterministic Heun). Steps into sigma=0 skip the correction (Euler)."""
  sigmas = jnp.asarray(sigmas, x.dtype)

  def step(i, x):
    s, s_next = sigmas[i], sigmas[i + 1]
    denoised = denoise(x, s, cond)
    d = (x - denoised) / s
    x_euler = _euler_step(x, denoised, s, s_next)

    def correct():
      d_next = (x_euler - denoise(x_euler, s_next, cond)) / s_next
      return x + (s_next - s) * 0.5 * (d + d_next)

    return jax.lax.cond(s_next > 0, correct, lambda: x_euler)

  return jax.lax.fori_loop(0, _num_steps(sigmas), step, x)


def dpm_solver_2m(denoise, x, sigmas, cond=None):
  """DPM-Solver++(2M) with alpha=1, lambda=-log(sigma) (k-diffusion's sample_dpmpp_2m).

    x_i = (s_i/s_{i-1}) x_{i-1} - (exp(-h_i) - 1) D_i with h_i = log(s_{i-1}/s_i) and
    D_i = (1 + 1/(2r)) x0_{i-1} - 1/(2r) x0_{i-2}, r = h_{i-1}/h_i. The first step and any
    step into sigma=0 are first order (the latter returns the denoised value).
    """
  sigmas = jnp.asarray(sigmas, x.dtype)

  def step(i, carry):
    x, x0_prev = carry
    s, s_next = sigmas[i], sigmas[i + 1]
    x0 = denoise(x, s, cond)
    second = (i > 0) & (s_next > 0)
    # Safe substitutes keep the unused branch finite.
    h = jnp.log(s / jnp.where(s_next > 0, s_next, s))
    h_last = jnp.where(i > 0, jnp.log(sigmas[jnp.maximum(i - 1, 0)] / s), 1.0)
    half_inv_r = h / (2.0 * h_last)
    x0_mix = jnp.where(second, x0 + half_inv_r * (x0 - x0_prev), x0)
    ratio = s_next / s  # = exp(-h)
    return ratio * x + (1.0 - ratio) * x0_mix, x0

  x, _ = jax.lax.fori_loop(0, _num_steps(sigmas), step, (x, jnp.zeros_like(x)))
  return x


SOLVERS = {"euler": euler, "heun": heun, "dpm_solver_2m": dpm_solver_2m, "rk45": rk45_solver()}


def nfe(solver_name, sigmas):
  """Network evaluations used by `solver_name` ("euler", "heun", "dpm_solver_2m", "student") on `sigmas`.

    euler / dpm_solver_2m: one per step; heun: two per step except steps ending at sigma=0;
    student: one per positive level. Counts one evaluation per denoiser call: with
    classifier-free guidance each call is a single batched 2B evaluation and still counts
    once here (guided cost is doubled by the caller where relevant).
    """
  sigmas = np.asarray(sigmas)
  steps = len(sigmas) - 1
  if solver_name in ("euler", "dpm_solver_2m"):
    return steps
  if solver_name == "heun":
    return 2 * steps - int(np.sum(sigmas[1:] == 0))
  if solver_name == "student":
    return int(np.sum(sigmas > 0))
  if solver_name == "rk45":
    raise ValueError("rk45 is adaptive: use the per-sample counts returned by samplers.adaptive.rk45")
  raise ValueError(f"unknown solver {solver_name!r}; valid: {', '.join([*SOLVERS, 'student'])}")

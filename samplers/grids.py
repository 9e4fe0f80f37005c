"""Noise-level grids in the EDM/VE convention (x_sigma = x0 + sigma * n).

Every grid is a float32 numpy array ordered from noise (sigma_max) to data,
decreasing, with a trailing 0 unless stated otherwise.
"""
import numpy as np


def edm_sigmas(num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """Karras et al. (2022) rho-schedule: num_steps levels from sigma_max to sigma_min, then 0.

    Returns shape (num_steps + 1,). For num_steps == 1 the levels are just [sigma_max].
    """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  frac = np.arange(num_steps) / max(num_steps - 1, 1)
  lo, hi = sigma_min**(1.0 / rho), sigma_max**(1.0 / rho)
  levels = (hi + frac * (lo - hi))**rho
  return np.append(levels, 0.0).astype(np.float32)


def uniform_t_sigmas(num_steps, eps=1e-3):
  """Rectified-flow time t uniform on [eps, 1] (t=eps noise, t=1 data), as sigma = (1-t)/t.

    Returns shape (num_steps + 1,), starting at (1-eps)/eps and ending exactly at 0.
    """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if not 0.0 < eps < 1.0:
    raise ValueError(f"eps must be in (0, 1), got {eps}")
  t = np.linspace(eps, 1.0, num_steps + 1)
  return ((1.0 - t) / t).astype(np.float32)


def explicit_sigmas(values):
  """Validate a user grid: finite, positive, strictly decreasing; a trailing 0 is appended if missing."""
  v = np.asarray(values, dtype=np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"explicit sigmas must be a non-empty 1-D list, got shape {v.shape}")
  levels = v[:-1] if v[-1] == 0 else v
  if levels.size == 0:
    raise ValueError("explicit sigmas need at least one positive level before the final 0")
  if not np.all(np.isfinite(levels)):
    raise ValueError(f"explicit sigmas must be finite, got {list(values)}")
  if not np.all(levels > 0):
    raise ValueError(f"explicit sigmas must be positive (only the last may be 0), got {list(values)}")
  if not np.all(np.diff(levels) < 0):
    raise ValueError(f"explicit sigmas must be strictly decreasing, got {list(values)}")
  return np.append(levels, 0.0).astype(np.float32)


def schedule_sigmas(levels, num_steps):
  """A few-step student's grid at `num_steps` from its trained levels (decreasing, levels[0] the one-step level):
  levels[floor(i K / num_steps)] for i < num_steps, K = len(levels), then 0 -- NitroFusion's {999}, {999, 499},
  {999, 749, 499, 249} for 1, 2, 4 steps of a 4-level schedule."""
  levels = explicit_sigmas(levels)[:-1]
  if not 1 <= num_steps <= len(levels):
    raise ValueError(f"this student was trained at {len(levels)} noise levels: steps must be 1..{len(levels)}, "
                     f"got {num_steps}")
  picks = (np.arange(num_steps) * len(levels)) // num_steps
  return np.append(levels[picks], 0.0).astype(np.float32)


_KINDS = ("edm", "uniform_t", "explicit", "schedule")


def make_sigmas(kind, num_steps=None, **kwargs):
  """Build a grid by name: "edm", "uniform_t" (both need num_steps) or "explicit" (needs values=).

    For "explicit", num_steps is optional and, if given, must equal the number of steps.
    """
  if kind == "edm":
    return edm_sigmas(num_steps, **kwargs)
  if kind == "uniform_t":
    return uniform_t_sigmas(num_steps, **kwargs)
  if kind == "explicit":
    sigmas = explicit_sigmas(**kwargs)
    if num_steps is not None and num_steps != len(sigmas) - 1:
      raise ValueError(f"num_steps={num_steps} but the explicit grid has {len(sigmas) - 1} steps")
    return sigmas
  if kind == "schedule":
    return schedule_sigmas(kwargs["values"], num_steps)
  raise ValueError(f"unknown sigma grid kind {kind!r}; valid kinds: {', '.join(_KINDS)}")

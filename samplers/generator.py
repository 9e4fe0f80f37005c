"""Sampling a network with the configured solver, sharded over a mesh, independent of batch size and device count.

Sample i always uses the key fold_in(key, i) (samplers/sampling.py), so the same (key, i) gives the same noise and
the same sample for any batch size, padding or device count, up to float rounding: XLA may pick different kernels
or reduction orders for other batch shapes or device counts (seen: up to 3e-5 on unit-scale 2-D samples). Outputs are in the model's data space (images in [-1, 1]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from distill.sharding import to_host
from distill.stacked import is_stacked, student_params
from samplers.adaptive import rk45
from samplers.grids import edm_sigmas, explicit_sigmas, schedule_sigmas, uniform_t_sigmas
from samplers.guidance import classifier_free_guidance
from samplers.ode import nfe as solver_nfe
from samplers.sampling import initial_noise, num_renoise, renoise, sample_keys, solve_from_noise


def sigma_grid(sampler_config, steps: int | None = None) -> np.ndarray:
  """Decreasing sigma grid from the sampler config: grid 'edm' (sigma_min, sigma_max, rho), 'uniform_t' (t_eps),
  'explicit' (sigmas, whatever `steps`) or 'schedule' (a few-step student's trained levels `sigmas`, subsampled to
  `steps`)."""
  cfg = dict(sampler_config)
  steps = int(steps or cfg["steps"])
  grid = cfg["grid"]
  if grid == "edm":
    return edm_sigmas(steps, cfg.get("sigma_min", 0.002), cfg.get("sigma_max", 80.0), cfg.get("rho", 7.0))
  if grid == "uniform_t":
    return uniform_t_sigmas(steps, cfg.get("t_eps", 1e-3))
  if grid == "explicit":
    return explicit_sigmas(cfg["sigmas"])
  if grid == "schedule":
    return schedule_sigmas(cfg["sigmas"], steps)
  raise ValueError(f"unknown sampler grid {grid!r}; choose edm, uniform_t, explicit or schedule")


def default_labels(indices: np.ndarray, num_classes: int) -> np.ndarray:
  """Balanced labels for class-conditional sampling when none are given: index mod num_classes."""
  return (indices % num_classes).astype(np.int32)


class Generator:
  """Jitted sampler for one network: `generate(params, key, num, steps, labels)` -> numpy (num, *shape).

  For stacked students (distill/stacked.py) each row is sampled by the student its router picks (from its label, or
  from its noise), with that student's parameters: the rows of each student are sampled together, so a mixed batch
  equals the per-student runs and costs what one student's batch costs."""

  def __init__(self, network, shape, sampler_config, mesh=None, batch_size: int = 1000):
    self.network = network
    self.router = network.router if is_stacked(network) else None
    self.sampled = network.base if self.router else network
    self.shape = tuple(shape)
    self.config = dict(sampler_config)
    self.num_classes = dict(network.model_kwargs).get("num_classes", 0)
    self.mesh = mesh if mesh is not None else jax.make_mesh(
        (jax.device_count(),), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
    self.batch_sharding = NamedSharding(self.mesh, P(self.mesh.axis_names))
    self.chunk = max(self.mesh.size, batch_size // self.mesh.size * self.mesh.size)
    self._compiled = {}

  def nfe(self, steps: int | None = None) -> int | None:
    """Network evaluations per sample (a guided evaluation counts twice); None for the adaptive rk45, whose
    per-sample counts `generate_with_noise` returns."""
    grid = sigma_grid(self.config, steps)
    solver = self.config["solver"]
    if solver == "rk45":
      return None
    per_step = 2 if self._guided() else 1
    return solver_nfe(solver, grid) * per_step

  def _guided(self) -> bool:
    return bool(self.num_classes) and float(self.config.get("guidance", 1.0)) != 1.0

  def from_noise(self, steps: int | None = None):
    """The pure sampling function at `steps`: f(params, noise, labels, renoises) -> (float32 samples in data space,
    int32 network evaluations per sample), from standard-normal noise (B, *shape), labels (B,) or None, and for the
    student solver its renoise draws (num_renoise(grid), B, *shape) (None otherwise). Jit-able and exportable."""
    grid = sigma_grid(self.config, steps)
    solver, guided = self.config["solver"], self._guided()
    nfe = self.nfe(steps)

    def f(params, noise, labels, renoises=None):
      denoise = self._denoiser(params)
      if solver == "rk45":
        x, counts = rk45(denoise, grid[0] * noise, grid, labels, rtol=float(self.config.get("rtol", 1e-5)),
                         atol=float(self.config.get("atol", 1e-5)))
        return x.astype(jnp.float32), counts * (2 if guided else 1)
      x = solve_from_noise(denoise, noise, grid, solver, labels, renoises)
      return x, jnp.full(noise.shape[:1], nfe, jnp.int32)

    return f

  def _denoiser(self, params):
    """D(x, sigma, labels) of the sampled network, with classifier-free guidance when configured."""
    denoise = lambda x, s, c: self.sampled.denoise(params, x, s, c)
    if self._guided():
      denoise = classifier_free_guidance(denoise, float(self.config["guidance"]), self.num_classes)
    return denoise

  def on_grid(self):
    """f(params, noise, labels, sigmas) -> float32 samples: the configured ODE solver on a grid passed as an array
    (decreasing, ending at 0), so one compilation serves every grid of a length (time-step searches)."""
    solver = self.config["solver"]
    if solver in ("rk45", "student"):
      raise ValueError(f"solver {solver!r} has no fixed grid to search; use euler, heun or dpm_solver_2m")
    return lambda params, noise, labels, sigmas: solve_from_noise(self._denoiser(params), noise, sigmas, solver,
                                                                  labels)

  def num_renoise(self, steps: int | None = None) -> int:
    """Fresh noise draws per sample besides the initial noise (only the multistep student solver takes any)."""
    return num_renoise(sigma_grid(self.config, steps)) if self.config["solver"] == "student" else 0

  def _fn(self, steps):
    if steps not in self._compiled:
      sample, shape, draws = self.from_noise(steps), self.shape, self.num_renoise(steps)

      def run(params, key, indices, labels):
        keys = sample_keys(key, indices)
        noise = initial_noise(keys, shape)
        renoises = jax.vmap(lambda k: renoise(keys, k, shape))(jnp.arange(draws)) if draws else None
        x, nfe = sample(params, noise, labels, renoises)
        return x, noise, nfe

      self._compiled[steps] = jax.jit(run, out_shardings=self.batch_sharding)
    return self._compiled[steps]

  def generate(self, params, key, num: int, steps: int | None = None, labels=None, first_index: int = 0):
    """Samples first_index .. first_index + num - 1: float32 numpy (num, *shape) in data space."""
    return self.generate_with_noise(params, key, num, steps, labels, first_index)[0]

  def generate_with_noise(self, params, key, num: int, steps: int | None = None, labels=None,
                          first_index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(samples, the standard-normal noise each started from (x = sigma_max * noise), both (num, *shape), and the
    network evaluations each sample used (num,))."""
    steps = int(steps or self.config["steps"])
    indices = np.arange(first_index, first_index + num, dtype=np.int32)
    if self.num_classes:
      labels = default_labels(indices, self.num_classes) if labels is None else np.asarray(labels, np.int32)
      if labels.shape != (num,):
        raise ValueError(f"labels must have shape ({num},), got {labels.shape}")
    elif labels is not None:
      raise ValueError("this model is unconditional: labels must be None")
    if self.router is None:
      return self._generate_rows(params, key, indices, labels, steps)
    routes = self.router.route(labels, self.initial_noise(key, indices) if self.router.needs_noise else None)
    out = None
    for k in np.unique(routes):
      rows = np.flatnonzero(routes == k)
      res = self._generate_rows(student_params(params, int(k)), key, indices[rows],
                                None if labels is None else labels[rows], steps)
      if out is None:
        out = tuple(np.empty((num,) + r.shape[1:], r.dtype) for r in res)
      for full, part in zip(out, res):
        full[rows] = part
    return out

  def initial_noise(self, key, indices: np.ndarray) -> np.ndarray:
    """The standard-normal noise samples `indices` start from (num, *shape)."""
    if "noise" not in self._compiled:
      self._compiled["noise"] = jax.jit(lambda k, i: initial_noise(sample_keys(k, i), self.shape))
    return np.asarray(self._compiled["noise"](key, jnp.asarray(indices)))

  def _generate_rows(self, params, key, indices: np.ndarray, labels, steps: int):
    """generate_with_noise for the sample indices `indices` of one network's parameters."""
    fn, num = self._fn(steps), len(indices)
    # Batches of at most `self.chunk`, padded only up to a multiple of the device count.
    chunk = min(self.chunk, -(-num // self.mesh.size) * self.mesh.size)
    out, noise, nfe = [], [], []
    for start in range(0, num, chunk):
      idx = indices[start:start + chunk]
      pad = chunk - len(idx)
      idx_p = np.concatenate([idx, np.full(pad, idx[-1], np.int32)])  # padded rows are dropped below
      lab_p = None if labels is None else np.concatenate([labels[start:start + chunk], np.zeros(pad, np.int32)])
      put = lambda a: jax.make_array_from_callback(a.shape, self.batch_sharding, lambda i: a[i])
      res, res_noise, res_nfe = fn(params, key, put(idx_p), None if lab_p is None else put(lab_p))
      out.append(to_host(res)[:len(idx)])
      noise.append(to_host(res_noise)[:len(idx)])
      nfe.append(to_host(res_nfe)[:len(idx)])
    return np.concatenate(out), np.concatenate(noise), np.concatenate(nfe)

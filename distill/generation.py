"""Sampling a network with the configured solver, sharded over a mesh, independent of batch size and device count.

Sample i always uses the key fold_in(key, i) (samplers/sampling.py), so the same (key, i) gives the same noise and
the same sample for any batch size, padding or device count, up to float rounding: XLA may pick different kernels
or reduction orders for other batch shapes or device counts (seen: up to 3e-5 on unit-scale 2-D samples). Outputs are in the model's data space (images in [-1, 1]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

import samplers


def sigma_grid(sampler_config, steps: int | None = None) -> np.ndarray:
  """Decreasing sigma grid from the sampler config: grid 'edm' (sigma_min, sigma_max, rho), 'uniform_t' (t_eps)
  or 'explicit' (sigmas)."""
  cfg = dict(sampler_config)
  steps = int(steps or cfg["steps"])
  grid = cfg["grid"]
  if grid == "edm":
    return samplers.edm_sigmas(steps, cfg.get("sigma_min", 0.002), cfg.get("sigma_max", 80.0), cfg.get("rho", 7.0))
  if grid == "uniform_t":
    return samplers.uniform_t_sigmas(steps, cfg.get("t_eps", 1e-3))
  if grid == "explicit":
    return samplers.explicit_sigmas(cfg["sigmas"])
  raise ValueError(f"unknown sampler grid {grid!r}; choose edm, uniform_t or explicit")


def default_labels(indices: np.ndarray, num_classes: int) -> np.ndarray:
  """Balanced labels for class-conditional sampling when none are given: index mod num_classes."""
  return (indices % num_classes).astype(np.int32)


def to_host(x: jax.Array) -> np.ndarray:
  """The full value of a (possibly multi-process) sharded array on every process."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


class Generator:
  """Jitted sampler for one network: `generate(params, key, num, steps, labels)` -> numpy (num, *shape)."""

  def __init__(self, network, shape, sampler_config, mesh=None, batch_size: int = 1000):
    self.network = network
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
    return samplers.nfe(solver, grid) * per_step

  def _guided(self) -> bool:
    return bool(self.num_classes) and float(self.config.get("guidance", 1.0)) != 1.0

  def _fn(self, steps):
    if steps not in self._compiled:
      grid = sigma_grid(self.config, steps)
      solver = self.config["solver"]
      network, shape = self.network, self.shape

      def run(params, key, indices, labels):
        denoise = lambda x, s, c: network.denoise(params, x, s, c)
        if self._guided():
          denoise = samplers.classifier_free_guidance(denoise, float(self.config["guidance"]), self.num_classes)
        noise = samplers.initial_noise(samplers.sample_keys(key, indices), shape)
        if solver == "rk45":
          x, nfe = samplers.rk45(denoise, grid[0] * noise, grid, labels, rtol=float(self.config.get("rtol", 1e-5)),
                                 atol=float(self.config.get("atol", 1e-5)))
          return x.astype(jnp.float32), noise, nfe * (2 if self._guided() else 1)
        x = samplers.solve(denoise, key, indices, shape, grid, solver=solver, cond=labels)
        return x, noise, jnp.full(indices.shape, self.nfe(steps), jnp.int32)

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
    fn = self._fn(steps)
    indices = np.arange(first_index, first_index + num, dtype=np.int32)
    if self.num_classes:
      labels = default_labels(indices, self.num_classes) if labels is None else np.asarray(labels, np.int32)
      if labels.shape != (num,):
        raise ValueError(f"labels must have shape ({num},), got {labels.shape}")
    elif labels is not None:
      raise ValueError("this model is unconditional: labels must be None")
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

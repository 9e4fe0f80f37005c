"""BOSS (Nguyen et al. 2024; spec §4): Bellman-optimal step sizes for a pretrained flow, as a sampler grid.

`bellman_grid` measures single-Euler-jump costs along `num_samples` reference trajectories of the model on a fine
uniform RF-time grid (t_eps .. 1, `fine_steps` steps) and picks the K-jump path of least total cost
(samplers/bellman.py). The result is an explicit EDM sigma grid for the Euler sampler, saved as JSON
({"t_fine", "nodes", "sigmas", "cost", "uniform_cost", ...}) and as a sampler bundle. The straightening fine-tune
on the path's segments is the `boss` objective (distill/objectives/boss.py), which reads the same JSON.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from distill.errors import UserError


def uniform_nodes(fine_steps: int, num_steps: int) -> np.ndarray:
  """The uniform K-step path on the fine grid (rounded node indices)."""
  return np.round(np.linspace(0, fine_steps, num_steps + 1)).astype(int)


def bellman_grid(velocity_fn, shape, num_steps: int, *, fine_steps: int = 100, num_samples: int = 100,
                 seed: int = 0, t_eps: float = 1e-3) -> dict:
  """The Bellman path for `velocity_fn(x_rf, t)` (scalar t) with its cost and the uniform path's cost."""
  import samplers

  t_fine = np.linspace(t_eps, 1.0, fine_steps + 1)
  z = jax.random.normal(jax.random.key(seed), (num_samples,) + tuple(shape))
  cost = samplers.euler_jump_costs(velocity_fn, z, t_fine)
  nodes, total = samplers.bellman_steps(cost, num_steps)
  uniform = uniform_nodes(fine_steps, num_steps)
  return {"num_steps": num_steps, "fine_steps": fine_steps, "num_samples": num_samples, "seed": seed,
          "t_eps": t_eps, "t_fine": t_fine.tolist(), "nodes": nodes.tolist(),
          "sigmas": samplers.bellman_sigmas(t_fine, nodes).tolist(), "cost": total,
          "uniform_cost": float(sum(cost[a, b] for a, b in zip(uniform[:-1], uniform[1:])))}


def read_grid(path: str) -> dict:
  if not os.path.isfile(path):
    raise UserError(f"Bellman grid file not found: {path}; create it with `distill boss`")
  with open(path) as f:
    return json.load(f)


def sampler_config(grid: dict) -> dict:
  """Euler on the Bellman grid's explicit sigmas."""
  return {"solver": "euler", "grid": "explicit", "sigmas": list(grid["sigmas"]), "steps": grid["num_steps"]}


def export_bellman_sampler(bundle: str, out_json: str, out_bundle: str | None, num_steps: int, **kwargs) -> dict:
  """Compute the Bellman grid of an exported model, write it as JSON and (optionally) as a copy of the bundle that
  samples with Euler on it. Returns the grid."""
  import samplers

  model = samplers.load(bundle)
  if model.kind != "points" and kwargs.get("num_samples", 100) > 1000:
    raise UserError("use at most 1000 reference trajectories for images (memory grows with fine_steps x samples)")
  velocity = lambda x, t: model.network.velocity(model.params, x, jnp.full(x.shape[:1], t))
  grid = bellman_grid(velocity, model.shape, num_steps, **kwargs)
  grid["bundle"] = os.path.abspath(bundle)
  grid["checksum"] = model.meta["checksum"]
  save_grid(grid, out_json, model, out_bundle, sampler_config(grid), "bellman_grid")
  return grid


def save_grid(record: dict, out_json: str, model, out_bundle: str | None, sampler: dict, provenance_key: str) -> None:
  """Write a searched sampler grid's record as JSON and, with `out_bundle`, a copy of the loaded bundle `model` that
  samples with `sampler`, its provenance naming the JSON under `provenance_key` (BOSS and AutoDiffusion)."""
  import samplers
  from distill.data import DataSpec

  os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
  with open(out_json, "w") as f:
    json.dump(record, f, indent=2)
  if out_bundle:
    data = model.meta["data"]
    spec = DataSpec(data["kind"], tuple(data["shape"]), data["num_classes"], tuple(data["data_range"]))
    samplers.export_bundle(out_bundle, model.network, model.params, sampler_config=sampler, data_spec=spec,
                           provenance={**model.meta.get("provenance", {}), provenance_key: out_json})

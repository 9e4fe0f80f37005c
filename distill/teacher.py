"""Frozen teachers: a network plus parameters, loaded from an exported bundle or a training workdir."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp

from distill.errors import UserError
from distill.networks import Network


@dataclasses.dataclass(frozen=True)
class Teacher:
  network: Network
  params: Any  # nnx.State; passed to the jitted step as an argument, never closed over
  bundle_meta: dict = dataclasses.field(default_factory=dict)  # sampler.json of the bundle + its path


def load_teacher(teacher_config) -> Teacher | None:
  """From config.teacher: `bundle` (an exported sampler) or `workdir` (a finished run, exported on the fly);
  `dtype` 'bfloat16' stores the frozen parameters in bf16 and runs the teacher in bf16 (its preconditioning and
  outputs stay float32, see distill/networks.py); 'float32' keeps the bundle's own compute dtype. Returns None when
  neither is set."""
  import samplers

  bundle, workdir = teacher_config.get("bundle", ""), teacher_config.get("workdir", "")
  if bundle and workdir:
    raise UserError("set only one of teacher.bundle and teacher.workdir")
  if workdir:
    bundle = os.path.join(workdir, "export")
    if not os.path.exists(bundle):
      raise UserError(f"teacher.workdir {workdir} has no export/ bundle; run `distill export --workdir {workdir}`")
  if not bundle:
    return None
  loaded = samplers.load(bundle)
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[teacher_config.get("dtype", "float32")]
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype), loaded.params)
  network = loaded.network if dtype == jnp.float32 else dataclasses.replace(loaded.network, compute_dtype="bfloat16")
  return Teacher(network=network, params=params, bundle_meta=dict(loaded.meta, path=loaded.path))

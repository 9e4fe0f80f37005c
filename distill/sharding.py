"""Device mesh, logical-axis rules and the shardings of the training state, derived once from abstract shapes.

Mesh axes are ('student', 'data', 'fsdp'). Parameters carry logical axis names (models/layers.py); `config.sharding.rules`
maps them to mesh axes, so data parallelism ({data: N, fsdp: 1}) versus FSDP ({data: 1, fsdp: N}) is a config change.
'student' (default size 1) spreads the leading axis of stacked students (distill/stacked.py) over devices. Batches are
sharded along their leading axis over all mesh axes, student-major, so a batch laid out student by student puts each
student's rows on its student's devices.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("student", "data", "fsdp")
BATCH_SPEC = P(MESH_AXES)


def make_mesh(mesh_config) -> jax.sharding.Mesh:
  """Mesh from {'student': s (default 1), 'data': n, 'fsdp': m}; one entry may be -1 (all remaining devices). A
  single process may use fewer than all its devices (the first s * n * m)."""
  unknown = sorted(set(mesh_config) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"unknown mesh axes {unknown}; valid: {', '.join(MESH_AXES)}")
  sizes = [int(mesh_config.get(a, 1)) for a in MESH_AXES]
  n = jax.device_count()
  if sizes.count(-1) > 1:
    raise ValueError("at most one mesh axis may be -1")
  if -1 in sizes:
    known = int(np.prod([s for s in sizes if s != -1]))
    if n % known:
      raise ValueError(f"{n} devices cannot be split into mesh {dict(zip(MESH_AXES, sizes))}")
    sizes[sizes.index(-1)] = n // known
  needed = int(np.prod(sizes))
  if needed > n or (needed < n and jax.process_count() > 1):
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {needed} devices, found {n}")
  return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
                       devices=jax.devices()[:needed])


def logical_rules(rules) -> tuple:
  """Config rules [(logical_name, mesh_axis | [axes] | None), ...] -> tuple form for nnx.logical_axis_rules."""
  out = []
  for name, target in rules:
    out.append((name, tuple(target) if isinstance(target, (list, tuple)) else target))
  return tuple(out)


def param_shardings(abstract_params: nnx.State, mesh, rules) -> nnx.State:
  """NamedShardings for a network's parameters from their logical annotations and the rules.

  A dimension that the mapped mesh axes do not divide (e.g. a 1-channel output conv under fsdp = 2) is replicated
  instead, so FSDP works for any parameter shape.
  """
  with nnx.logical_axis_rules(logical_rules(rules)):
    specs = nnx.get_partition_spec(abstract_params)
  is_spec = lambda x: isinstance(x, P) or x is None
  spec_leaves, treedef = jax.tree.flatten(specs, is_leaf=is_spec)
  shardings = [NamedSharding(mesh, _divisible_spec(spec, leaf.shape, mesh))
               for spec, leaf in zip(spec_leaves, jax.tree.leaves(abstract_params))]
  return jax.tree.unflatten(treedef, shardings)


def _divisible_spec(spec, shape, mesh) -> P:
  if spec is None:
    return P()
  entries = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
    entries.append(axes if size > 1 and dim % size == 0 else None)
  return P(*entries)


def match_tree_shardings(tree, reference_structure, reference_shardings, mesh):
  """Shardings for an arbitrary pytree (e.g. an optax state): every subtree with the structure of the parameters
  gets the parameters' shardings, every other leaf is replicated."""
  replicated = NamedSharding(mesh, P())
  is_params = lambda x: jax.tree.structure(x) == reference_structure
  return jax.tree.map(lambda x: reference_shardings if is_params(x) else replicated, tree, is_leaf=is_params)


def stacked_shardings(shardings, num: int, mesh):
  """Shardings of `num` stacked copies of parameters with `shardings`: the new leading axis over the 'student' mesh
  axis when that divides `num` (replicated otherwise), the other axes as before."""
  lead = "student" if mesh.shape.get("student", 1) > 1 and num % mesh.shape["student"] == 0 else None
  return jax.tree.map(lambda s: NamedSharding(mesh, P(lead, *s.spec)), shardings)


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: dict, mesh) -> dict:
  """This process's rows of the global batch (numpy) -> global jax.Arrays sharded along the batch axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def to_host(x: jax.Array) -> np.ndarray:
  """The full value of a (possibly multi-process) sharded array on every process."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))

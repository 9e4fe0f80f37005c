"""K students as one network: parameters with a leading student axis, and the router that picks a student per row.

- `Router`: condition -> student index in [0, K). kind 'classes': a class -> student table (K divides the classes
  into parts); kind 'noise': for an unconditional model, the student of a row is read from the signs of its
  standard-normal noise z (flattened) along m orthonormal directions, student = sum_j [d_j . z > 0] 2^j (K = 2^m).
- `StackedNetwork(base, router)`: behaves as a ParamGroup network (init, abstract_params) whose parameters are the
  base network's with a leading axis of size K = router.num_students; every other attribute is the base's.
  Student k's parameters are `student_params(params, k)`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

ROUTER_KINDS = ("classes", "noise")


@dataclasses.dataclass(frozen=True)
class Router:
  """See the module docstring. `table`: student of each class (kind 'classes'); `directions`: m unit vectors over
  the flattened noise, as nested tuples (kind 'noise')."""

  kind: str
  num_students: int
  table: tuple = ()
  directions: tuple = ()

  def __post_init__(self):
    if self.kind not in ROUTER_KINDS:
      raise ValueError(f"router kind must be one of {', '.join(ROUTER_KINDS)}, got {self.kind!r}")
    if self.num_students < 1:
      raise ValueError(f"a router needs at least one student, got {self.num_students}")
    if self.kind == "classes":
      bad = sorted({int(s) for s in self.table if not 0 <= int(s) < self.num_students})
      if not self.table or bad:
        raise ValueError(f"router table {list(self.table)} names students {bad or '(none)'} outside the "
                         f"{self.num_students} students")
      missing = sorted(set(range(self.num_students)) - {int(s) for s in self.table})
      if missing:
        raise ValueError(f"router table {list(self.table)} gives no class to students {missing}")
    elif 2 ** len(self.directions) != self.num_students:
      raise ValueError(f"a noise router with {len(self.directions)} directions serves {2 ** len(self.directions)} "
                       f"students, not {self.num_students}")

  @property
  def needs_noise(self) -> bool:
    return self.kind == "noise"

  def route(self, labels=None, noise=None):
    """Student index (int32, shape (B,)) of each row, from labels (B,) or noise (B, ...); numpy in, numpy out,
    jax in, jax out."""
    xp = jnp if isinstance(labels if self.kind == "classes" else noise, jax.Array) else np
    if self.kind == "classes":
      if labels is None:
        raise ValueError("a class router needs labels")
      labels = xp.asarray(labels)
      if xp is np and labels.size and (labels.min() < 0 or labels.max() >= len(self.table)):
        outside = sorted({int(c) for c in labels if not 0 <= c < len(self.table)})
        raise ValueError(f"labels {outside} are outside every partition (the router knows classes "
                         f"0..{len(self.table) - 1})")
      return xp.asarray(self.table, xp.int32)[labels]
    if noise is None:
      raise ValueError("a noise router needs the rows' noise")
    flat = xp.reshape(noise, (noise.shape[0], -1))
    bits = (flat @ xp.asarray(self.directions, flat.dtype).T > 0).astype(xp.int32)
    return xp.sum(bits * (2 ** xp.arange(len(self.directions), dtype=xp.int32)), axis=1).astype(xp.int32)

  def to_dict(self) -> dict:
    return {"kind": self.kind, "num_students": self.num_students, "table": [int(s) for s in self.table],
            "directions": [[float(v) for v in d] for d in self.directions]}

  @classmethod
  def from_dict(cls, d: dict) -> "Router":
    return cls(d["kind"], int(d["num_students"]), tuple(int(s) for s in d.get("table", ())),
               tuple(tuple(float(v) for v in row) for row in d.get("directions", ())))


@dataclasses.dataclass(frozen=True)
class StackedNetwork:
  """See the module docstring."""

  base: object
  router: Router

  @property
  def num_students(self) -> int:
    return self.router.num_students

  def __getattr__(self, name):  # model_kwargs, parameterization, config(), feature_names(), ...: the base's
    if name.startswith("__") or name in ("base", "router"):
      raise AttributeError(name)
    return getattr(self.base, name)

  def init(self, rng: jax.Array):
    """K independent initialisations (student k from split(rng, K)[k])."""
    return jax.vmap(self.base.init)(jax.random.split(rng, self.num_students))

  def abstract_params(self):
    return jax.eval_shape(self.init, jax.random.key(0))

  def from_single(self, params):
    """One network's parameters copied to every student."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (self.num_students,) + a.shape), params)

  def same_architecture(self, other) -> bool:
    """Whether single-network parameters of `other` (or stacked ones of another StackedNetwork with as many
    students) can initialise these students."""
    if isinstance(other, StackedNetwork):
      return other.num_students == self.num_students and self.base.same_architecture(other.base)
    return self.base.same_architecture(other)

  def same_model(self, other) -> bool:
    """Like same_architecture, whatever the output parameterisations."""
    if isinstance(other, StackedNetwork):
      return other.num_students == self.num_students and self.base.same_model(other.base)
    return self.base.same_model(other)

  def num_params(self) -> int:
    return self.num_students * self.base.num_params()


def student_params(params, k):
  """Student k's parameters from stacked ones (k an int or a traced scalar)."""
  return jax.tree.map(lambda a: a[k], params)


def is_stacked(network) -> bool:
  return isinstance(network, StackedNetwork)

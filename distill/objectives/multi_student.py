"""Multi-student distillation (MSD, spec adversarial_multistudent.md sections 6 and 8) as a wrapper around any
objective: K students, each serving one part of the condition space (distill/stacked.py's Router), trained at once.

- Layout: every group of the wrapped objective becomes a StackedNetwork (parameters with a leading student axis; its
  optimizer is vmapped too, so clipping, moments and step counts are per student), except the groups named in
  `shared` (one network for all students, e.g. a shared conditional fake score, spec section 8.3 (ii)).
- Batch: rows laid out student by student (distill/partitioned_data.py): a global batch of K * b rows is reshaped
  to (K, b, ...) and student k's loss sees block k. Keys prefixed 'full_' hold rows drawn from the whole data set
  (MSD's full-set paired regression); they are split into blocks the same way.
- Loss: the wrapped objective's loss is vmapped over students (parameters, objective state, batch block and key
  fold_in(rng, k)); the teacher's parameters are broadcast, so its K calls fuse into one batched call. The other
  layouts compute the students one after another (same values): 'unroll' traces K copies of the loss (a graph K
  times larger, the fastest on CPU), 'map' one jax.lax.map loop (a compact graph). On XLA's CPU backend a vmap over
  convolution weights becomes a slow grouped convolution and a convolution inside a loop is slow too (a K = 5 MNIST
  U-Net SiD step of 5 x 8 rows on 2 cores, scripts/benchmark_throughput.py: 0.80x one student's step on the 40
  rows unrolled, 11.0x vmapped, 6.7x in lax.map; 'unroll' compiles slower as K grows, 2m46s here). The loss of a
  stacked group is the sum over students, so each student's gradient is exactly its own loss's gradient; that of a
  shared group is the mean over students (the whole batch).
- Metrics: scalar metrics are averaged over students; each student's loss is also logged as loss_student<k>.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from distill.objectives.base import UPDATE_MASK, ParamGroup, WrappedObjective
from distill.stacked import Router, StackedNetwork


LAYOUTS = ("vmap", "unroll", "map")


@dataclasses.dataclass(frozen=True)
class MultiStudent(WrappedObjective):
  """See the module docstring."""

  base: object
  router: Router
  shared: tuple = ()
  layout: str = "vmap"

  def __post_init__(self):
    if self.layout not in LAYOUTS:
      raise ValueError(f"multi_student.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
    unknown = sorted(set(self.shared) - set(self.base.groups))
    if unknown:
      raise ValueError(f"multi_student.shared names groups {unknown}; the objective's groups are "
                       f"{', '.join(self.base.groups)}")
    if self.base.sample_group in self.shared:
      raise ValueError(f"multi_student.shared cannot hold the students themselves ({self.base.sample_group!r})")

  @property
  def num_students(self) -> int:
    return self.router.num_students

  @property
  def groups(self) -> dict:
    return {name: g if name in self.shared else _stacked_group(g, self.router) for name, g in self.base.groups.items()}

  def _blocks(self, batch) -> dict:
    k = self.num_students
    return {name: v.reshape((k, v.shape[0] // k) + v.shape[1:]) for name, v in batch.items()}

  def _keys(self, rng):
    return jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(self.num_students))

  def _one_by_one(self, fn, *mapped):
    """fn(*(x[k] for x in mapped)) for every student k, outputs stacked on a leading student axis, as the layout
    says: one vmapped call, K traced calls ('unroll') or one jax.lax.map loop ('map')."""
    if self.layout == "vmap":
      return jax.vmap(fn)(*mapped)
    if self.layout == "map":
      return jax.lax.map(lambda xs: fn(*xs), mapped)
    outs = [fn(*jax.tree.map(lambda v: v[k], mapped)) for k in range(self.num_students)]
    return jax.tree.map(lambda *vs: jnp.stack(vs), *outs)

  def _per_student(self, fn, params, *mapped):
    """fn(params of student k, *(x[k] for x in mapped)) for every k, outputs stacked on a leading student axis; shared
    groups' parameters go to every student whole."""
    shared = {name: p for name, p in params.items() if name in self.shared}
    own = {name: p for name, p in params.items() if name not in self.shared}
    return self._one_by_one(lambda p, *xs: fn({**shared, **p}, *xs), own, *mapped)

  def init_aux(self, params, teacher_params, rng):
    return self._per_student(lambda p, r: self.base.init_aux(p, teacher_params, r), params, self._keys(rng))

  def post_update(self, params, aux, step):
    return self._per_student(lambda p, a: self.base.post_update(p, a, step), params, aux)

  def per_student_loss(self, group, params, aux, teacher_params, batch, rng, step):
    """(losses (K,), metrics with leading K) of the wrapped objective, student by student."""
    per = lambda p, a, b, r: self.base.loss(group, p, a, teacher_params, b, r, step)
    return self._per_student(per, params, aux, self._blocks(batch), self._keys(rng))

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    losses, metrics = self.per_student_loss(group, params, aux, teacher_params, batch, rng, step)
    total = jnp.mean(losses) if group in self.shared else jnp.sum(losses)
    return total, _reduce(metrics, losses)


@dataclasses.dataclass(frozen=True)
class MultiStudentWithPostUpdate(MultiStudent):
  """MultiStudent around an objective with post_group_update (e.g. a discriminator pool's refresh): the hook runs per
  student, with that student's metrics, before the metrics are averaged."""

  def __post_init__(self):
    super().__post_init__()
    if self.shared:
      raise ValueError(f"multi_student.shared {list(self.shared)}: groups with a post-update hook (a discriminator "
                       "pool) are per student here; share none of them")

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    losses, metrics = self.per_student_loss(group, params, aux, teacher_params, batch, rng, step)
    return jnp.sum(losses), {**metrics, "loss_per_student": losses}

  def post_group_update(self, group, params, aux, metrics, rng, step):
    losses = metrics.pop("loss_per_student")
    hook = lambda p, a, m, r: self.base.post_group_update(group, p, a, m, r, step)
    params, reset, aux, metrics = self._one_by_one(hook, params, aux, metrics, self._keys(rng))
    return params, reset, aux, _reduce(metrics, losses)


def _reduce(metrics: dict, losses) -> dict:
  """Scalar-per-student metrics averaged over students (each student's loss kept as loss_student<k>); the update
  mask passed through with its student axis; other arrays (histograms) flattened over students."""
  out = {f"loss_student{k}": losses[k] for k in range(losses.shape[0])}
  for name, value in metrics.items():
    if name == UPDATE_MASK:
      out[name] = value
    elif value.ndim == 1:
      out[name] = jnp.mean(value)
    else:
      out[name] = value.reshape(-1)
  return out


def _stacked_group(group: ParamGroup, router: Router) -> ParamGroup:
  """The group with one network per student; bundle initial parameters copied to every student unless they are
  stacked already (a multi-student bundle with as many students)."""
  init_params = group.init_params
  if group.init == "bundle":
    shapes = [a.shape for a in jax.tree.leaves(init_params)]
    if shapes == [a.shape for a in jax.tree.leaves(group.network.abstract_params())]:
      init_params = jax.tree.map(lambda a: np.broadcast_to(a, (router.num_students,) + a.shape), init_params)
    elif shapes[0][0] != router.num_students:
      raise ValueError(f"the initial bundle holds {shapes[0][0]} students, the config trains {router.num_students}")
  return dataclasses.replace(group, network=StackedNetwork(group.network, router), init_params=init_params)

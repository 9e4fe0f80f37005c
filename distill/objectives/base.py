"""The objective interface every training method implements (teacher training and distillation alike).

An objective is a small frozen object that declares the networks it trains (`groups`, in update order) and a pure
`loss` per group. The trainer owns everything else: value_and_grad, clipping, optimizers, EMA, sharding, guards.

- `groups`: name -> ParamGroup(network, optim, every, offset, init). Group g is updated at steps where
  step % every == offset; groups are updated one after another within a step, each seeing the others' newest params.
- `loss(group, params, aux, teacher_params, batch, rng, step) -> (scalar, metrics dict)`: differentiated with respect
  to params[group] only; `params` maps every group name to its nnx.State. batch = {'x': (B, ...), 'label': (B,)?}.
- `init_aux(params, teacher_params, rng)` and `post_update(params, aux, step)`: objective-owned state (a pytree that is
  checkpointed and sharded with the rest), e.g. target networks or curriculum counters. Anything that changes over
  training must be a traced array, never a Python number, so nothing recompiles.
- Masked updates (optional): `loss` may return, under the metrics key UPDATE_MASK, a pytree prefix of the group's
  parameters with boolean leaves of leading shape (K,) (broadcast over each parameter's other axes); the trainer then
  keeps the parameters *and* optimizer moments of every False entry bit-identical (a zero gradient is not a zero Adam
  update). Used by the discriminator pool to train only the heads drawn this step.
- `post_group_update(group, params, aux, metrics, rng, step) -> (params, reset, aux, metrics)` (optional): a
  transform applied right after a group's update, with that update's metrics; `reset` (a mask like UPDATE_MASK's,
  or None) names entries whose optimizer moments the trainer zeroes. Used to re-initialise pool heads.
- `sample_group`: the group whose EMA parameters are sampled, evaluated and exported.
- `warmup_steps` (optional, default 0): steps before the sampled model follows the objective proper (a generator held
  or trained by a warm-up loss); in-training evaluation keeps no best checkpoint before it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol

from distill.networks import Network
from distill.partitioned_data import FULL_PREFIX


UPDATE_MASK = "update_mask"  # metrics key of a loss's masked-update pytree (see the module docstring)


def full_set_rows(batch: dict) -> dict:
  """The rows a full-set term (paired regression) uses: a multi-student batch's 'full_<key>' rows when it carries
  them (MSD's lesson: regression pairs are not filtered by partition), the batch itself otherwise."""
  full = {k[len(FULL_PREFIX):]: v for k, v in batch.items() if k.startswith(FULL_PREFIX)}
  return full or batch


@dataclasses.dataclass(frozen=True)
class ParamGroup:
  network: Network
  optim: Mapping[str, Any]
  every: int = 1
  offset: int = 0
  init: str = "random"  # "random", "teacher" (copy the teacher's parameters) or "bundle" (copy init_params)
  init_params: Any = dataclasses.field(default=None, compare=False, repr=False)  # host parameters for "bundle"


class Objective(Protocol):
  groups: Mapping[str, ParamGroup]
  sample_group: str

  def init_aux(self, params, teacher_params, rng) -> Any: ...

  def loss(self, group: str, params, aux, teacher_params, batch, rng, step): ...

  def post_update(self, params, aux, step) -> Any: ...


class WrappedObjective:
  """Mixin for an objective that wraps another (`self.base`): samples, exports and warms up as the base does."""

  @property
  def sample_group(self) -> str:
    return self.base.sample_group

  @property
  def warmup_steps(self) -> int:
    return getattr(self.base, "warmup_steps", 0)


class StatelessObjective:
  """Mixin for objectives without auxiliary state."""

  def init_aux(self, params, teacher_params, rng):
    del params, teacher_params, rng
    return {}

  def post_update(self, params, aux, step):
    del params, step
    return aux

"""The one generic training step and state for every objective.

Per step and per parameter group (in the objective's order, on its own schedule step % every == offset):
value_and_grad of the objective's loss -> global-norm clipping + optax optimizer (warm-up schedule) -> EMA ->
non-finite guard (a step whose loss or gradient is not finite leaves the group unchanged and records the step).
The state is created already sharded; the teacher's parameters are a frozen jit argument, never closed over.
Training randomness is fold_in(key(seed), step), so a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from distill import sharding as sharding_lib, tree_masks
from distill.objectives.base import UPDATE_MASK, Objective
from distill.stacked import is_stacked


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 scalar: number of completed steps
  params: dict               # group name -> nnx.State of nnx.Param
  ema: dict                  # group name -> EMA of params (used for sampling, evaluation and export)
  opt_state: dict            # group name -> optax state
  aux: Any                   # objective-owned state
  first_bad_step: jax.Array  # int32: first step with a non-finite loss or gradient, -1 if none


def learning_rate_schedule(optim: dict) -> optax.Schedule:
  """Linear warm-up from 0 over `warmup_steps`, then constant, or constant until `decay_start` (default: the end of
  the warm-up) and a cosine or linear decay to 0 at `decay_steps` (a method's late phase, e.g. Uni-Instruct's divergence
  phase after its SiD warm-up, can anneal alone)."""
  lr, warmup = float(optim["learning_rate"]), int(optim.get("warmup_steps", 0))
  decay = optim.get("schedule", "constant")
  start = max(warmup, int(optim.get("decay_start", 0)))
  if decay == "constant":
    after, start = optax.constant_schedule(lr), warmup
  elif decay in ("cosine", "linear"):
    if int(optim["decay_steps"]) <= start and start > warmup:
      raise ValueError(f"optim.decay_start ({start}) must be below optim.decay_steps ({optim['decay_steps']})")
    length = max(1, int(optim["decay_steps"]) - start)
    after = (optax.cosine_decay_schedule(lr, length) if decay == "cosine" else
             optax.linear_schedule(lr, 0.0, length))
  else:
    raise ValueError(f"unknown optim.schedule {decay!r}; choose constant, cosine or linear")
  pieces, boundaries = [], []
  if warmup:
    pieces.append(optax.linear_schedule(0.0, lr, warmup))
    boundaries.append(warmup)
  if start > warmup:
    pieces.append(optax.constant_schedule(lr))
    boundaries.append(start)
  return optax.join_schedules(pieces + [after], boundaries) if pieces else after


def make_optimizer(optim: dict) -> optax.GradientTransformation:
  """optax chain: clip_by_global_norm(clip_norm) (if > 0) then adam / adamw / radam on the schedule."""
  schedule = learning_rate_schedule(optim)
  kind = optim.get("name", "adam")
  b1, b2, eps = float(optim.get("b1", 0.9)), float(optim.get("b2", 0.999)), float(optim.get("eps", 1e-8))
  if kind == "adam":
    opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
  elif kind == "adamw":
    opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=float(optim.get("weight_decay", 0.0)))
  elif kind == "radam":
    opt = optax.radam(schedule, b1=b1, b2=b2, eps=eps)
  else:
    raise ValueError(f"unknown optim.name {kind!r}; choose adam, adamw or radam")
  clip = float(optim.get("clip_norm", 0.0))
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt


def group_optimizer(group) -> optax.GradientTransformation:
  """make_optimizer(group.optim); for stacked students (distill/stacked.py) one independent copy per student (its own
  gradient clipping, moments and step count), by vmap over the leading student axis."""
  tx = make_optimizer(group.optim)
  if not is_stacked(group.network):
    return tx
  return optax.GradientTransformation(jax.vmap(tx.init), jax.vmap(tx.update))


def ema_decay(ema_config: dict, step: jax.Array) -> jax.Array:
  """EMA decay at `step`; with warmup, score_sde's min(decay, (1 + n) / (10 + n))."""
  decay = jnp.asarray(float(ema_config["decay"]), jnp.float32)
  if ema_config.get("warmup", False):
    n = step.astype(jnp.float32)
    decay = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
  return decay


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _select_opt_state(mask, new_opt, old_opt, params):
  """new_opt on the parameter-shaped parts of an optax state (every subtree with the parameters' structure: Adam's
  moments) where the prefix `mask` over `params` is True, old_opt elsewhere; other parts (step counts) from new_opt."""
  full = tree_masks.broadcast_mask(mask, params)
  structure = jax.tree.structure(params)
  is_params = lambda x: jax.tree.structure(x) == structure
  pick = lambda n, o: jax.tree.map(jnp.where, full, n, o) if is_params(n) else n
  return jax.tree.map(pick, new_opt, old_opt, is_leaf=is_params)


class Trainer:
  """Builds the sharded state and the jitted step for an objective on a mesh."""

  def __init__(self, objective: Objective, mesh, rules, ema_config: dict, seed: int, teacher=None):
    self.objective = objective
    self.mesh = mesh
    self.rules = rules
    self.ema_config = dict(ema_config)
    self.seed = seed
    self.teacher = teacher
    self.txs = {name: group_optimizer(g) for name, g in objective.groups.items()}
    self.teacher_shardings = None if teacher is None else sharding_lib.param_shardings(
        teacher.network.abstract_params(), mesh, rules)
    abstract_teacher = None if teacher is None else jax.eval_shape(lambda: teacher.params)
    self.abstract_state = jax.eval_shape(self._init, jax.random.key(seed), abstract_teacher,
                                         jax.eval_shape(self._bundle_params))
    self.state_shardings = self._state_shardings(self.abstract_state)
    self._init_jit = jax.jit(self._init, out_shardings=self.state_shardings)
    repl = sharding_lib.replicated(mesh)
    self.step = jax.jit(
        self._train_step,
        in_shardings=(self.state_shardings, self.teacher_shardings, sharding_lib.batch_sharding(mesh)),
        out_shardings=(self.state_shardings, repl), donate_argnums=(0,))

  # ----- state -------------------------------------------------------------------------------------------------

  def _bundle_params(self) -> dict:
    """{group: parameters} of the groups initialised from an exported bundle (host arrays)."""
    return {name: g.init_params for name, g in self.objective.groups.items() if g.init == "bundle"}

  def _init(self, rng, teacher_params, bundle_params):
    params = {}
    for i, (name, group) in enumerate(self.objective.groups.items()):
      if group.init == "teacher":
        if teacher_params is None or not group.network.same_model(self.teacher.network):
          raise ValueError(f"group {name!r} initialises from the teacher, but no matching teacher is configured")
        params[name] = jax.tree.map(lambda a: a.astype(jnp.float32), teacher_params)
        if is_stacked(group.network):
          params[name] = group.network.from_single(params[name])
      elif group.init == "bundle":
        params[name] = jax.tree.map(lambda a: a.astype(jnp.float32), bundle_params[name])
      else:
        params[name] = group.network.init(jax.random.fold_in(rng, i))
    opt_state = {name: self.txs[name].init(p) for name, p in params.items()}
    aux = self.objective.init_aux(params, teacher_params, jax.random.fold_in(rng, 1000))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema=params, opt_state=opt_state, aux=aux,
                      first_bad_step=jnp.full((), -1, jnp.int32))

  def _state_shardings(self, abstract_state: TrainState) -> TrainState:
    repl = sharding_lib.replicated(self.mesh)
    params_sh, opt_sh = {}, {}
    for name, group in self.objective.groups.items():
      if is_stacked(group.network):
        single = sharding_lib.param_shardings(group.network.base.abstract_params(), self.mesh, self.rules)
        params_sh[name] = sharding_lib.stacked_shardings(single, group.network.num_students, self.mesh)
      else:
        params_sh[name] = sharding_lib.param_shardings(group.network.abstract_params(), self.mesh, self.rules)
      structure = jax.tree.structure(abstract_state.params[name])
      opt_sh[name] = sharding_lib.match_tree_shardings(abstract_state.opt_state[name], structure, params_sh[name],
                                                       self.mesh)
    aux_sh = jax.tree.map(lambda _: repl, abstract_state.aux)
    return TrainState(step=repl, params=params_sh, ema=params_sh, opt_state=opt_sh, aux=aux_sh, first_bad_step=repl)

  def init_state(self) -> TrainState:
    """A fresh state, created already sharded (parameters never materialise on one device first)."""
    bundle_params = {name: jax.device_put(p, self.state_shardings.params[name])
                     for name, p in self._bundle_params().items()}
    return self._init_jit(jax.random.key(self.seed), self.teacher_params(), bundle_params)

  def abstract_sharded_state(self) -> TrainState:
    """ShapeDtypeStructs carrying the current mesh's shardings (the restore target)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        self.abstract_state, self.state_shardings)

  def teacher_params(self):
    if self.teacher is None:
      return None
    return jax.device_put(self.teacher.params, self.teacher_shardings)

  # ----- the step ----------------------------------------------------------------------------------------------

  def _group_update(self, name, group, state, params, teacher_params, batch, rng):
    """One optimizer step of group `name` (masked and post-transformed as the objective asks, see
    objectives/base.py); returns (params, opt_state, ema, aux, metrics, finite)."""
    k_loss, k_post = jax.random.split(rng) if hasattr(self.objective, "post_group_update") else (rng, None)

    def loss_fn(p):
      return self.objective.loss(name, {**params, name: p}, state.aux, teacher_params, batch, k_loss, state.step)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params[name])
    metrics = dict(metrics)
    mask = metrics.pop(UPDATE_MASK, None)
    tx, old_opt = self.txs[name], state.opt_state[name]
    updates, new_opt = tx.update(grads, old_opt, params[name])
    new_params = optax.apply_updates(params[name], updates)
    if mask is not None:  # untouched entries keep their parameters and optimizer moments
      new_params = tree_masks.select(mask, new_params, params[name])
      new_opt = _select_opt_state(mask, new_opt, old_opt, new_params)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite(new_params)
    new_params, new_opt = jax.tree.map(lambda n, o: jnp.where(finite, n, o), (new_params, new_opt),
                                       (params[name], old_opt))
    aux = state.aux
    if k_post is not None:
      new_params, reset, aux, metrics = self.objective.post_group_update(name, new_params, aux, metrics, k_post,
                                                                         state.step)
      if reset is not None:  # re-initialised entries start with zero moments
        zeros = jax.tree.map(jnp.zeros_like, new_opt)
        new_opt = _select_opt_state(jax.tree.map(jnp.logical_not, reset), new_opt, zeros, new_params)
    new_ema = optax.incremental_update(new_params, state.ema[name], 1.0 - ema_decay(self.ema_config, state.step))
    new_ema = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_ema, state.ema[name])
    metrics = {"loss": loss, "grad_norm": grad_norm, **metrics}
    return new_params, new_opt, new_ema, aux, metrics, finite

  def _train_step(self, state: TrainState, teacher_params, batch):
    rng = jax.random.fold_in(jax.random.key(self.seed), state.step)
    params, opt_state, ema, aux = dict(state.params), dict(state.opt_state), dict(state.ema), state.aux
    all_metrics, all_finite = {}, jnp.array(True)
    for i, (name, group) in enumerate(self.objective.groups.items()):
      args = (name, group, state.replace(opt_state=opt_state, ema=ema, aux=aux), params, teacher_params, batch,
              jax.random.fold_in(rng, i))
      if group.every == 1:
        p, o, e, aux, metrics, finite = self._group_update(*args)
        active = jnp.array(True)
      else:
        active = state.step % group.every == group.offset
        shapes = jax.eval_shape(lambda: self._group_update(*args)[4])
        skipped = lambda: (params[name], opt_state[name], ema[name], aux,
                           jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), jnp.array(True))
        p, o, e, aux, metrics, finite = jax.lax.cond(active, lambda: self._group_update(*args), skipped)
      params[name], opt_state[name], ema[name] = p, o, e
      all_finite &= finite
      all_metrics.update({f"{name}/{k}": v for k, v in metrics.items()})
      all_metrics[f"{name}/updated"] = active.astype(jnp.float32)
    aux = self.objective.post_update(params, aux, state.step)
    first_bad = jnp.where((state.first_bad_step < 0) & ~all_finite, state.step, state.first_bad_step)
    new_state = TrainState(step=state.step + 1, params=params, ema=ema, opt_state=opt_state, aux=aux,
                           first_bad_step=first_bad)
    return new_state, all_metrics


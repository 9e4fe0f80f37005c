"""Adversarial distillation with a discriminator pool (distill/pool.py), composable with any student objective.

- `WithPool(base, pool, ...)`: any objective whose student can say what it generates (`student_sample`) gains a
  'pool' group (trained first in each step) and the adversarial term weight * L_G on its student group:
  L_student = L_base + weight * L_G, with the term off before `start` (the base's warm-up). Both terms' parameter
  gradients are computed separately (once each) and their norms logged every step; weight_mode 'grad_match' scales
  `weight` by ||grad_theta L_base|| / ||grad_theta L_G||, averaged over the `calibration_steps` steps from `start`
  and frozen after (spec section 7.4 matches the norms on the sample; the parameter gradient is what the optimiser
  sees and needs no access to the base's graph). The pool's real set is batch['x'] (teacher pairs, teacher
  samples or real data) with batch['label'] for a conditional teacher.
- `PairedStudent`: the student of pure adversarial distillation (NitroFusion, LADD): a denoiser D_theta trained at
  the EDM noise levels `levels` (levels[0] is the one-step level sigma_max), level k drawn per example with
  `level_probs`. Level 0 starts from sigma_0 * z (z: the pair's noise when the batch has one); level k > 0 from
  backward simulation, the student's own (not differentiated) k-step rollout re-noised to sigma_k, as the multistep
  student sampler does at inference. An optional regression term pulls the level-0 output to the paired teacher
  sample: regression_weight * distance(D(sigma_0 z; sigma_0), x_teacher), on the batch's level-0 rows, or on the
  full-set rows of a multi-student batch (objectives/base.full_set_rows).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from distill.objectives.base import UPDATE_MASK, ParamGroup, StatelessObjective, WrappedObjective, full_set_rows
from distill.objectives.reflow import check_distance, distance

WEIGHT_MODES = ("fixed", "grad_match")


def _num_classes(network) -> int:
  return dict(network.model_kwargs).get("num_classes", 0)


@dataclasses.dataclass(frozen=True)
class PairedStudent(StatelessObjective):
  """See the module docstring. groups: {'generator': ParamGroup}."""

  groups: dict
  levels: tuple = (80.0,)
  level_probs: tuple = (1.0,)
  regression_weight: float = 0.0
  regression_distance: str = "l2"
  lpips: object = None
  sample_group: str = "generator"

  def __post_init__(self):
    if len(self.levels) != len(self.level_probs) or not self.levels:
      raise ValueError(f"objective.levels {self.levels} and objective.level_probs {self.level_probs} need the same "
                       "non-zero length")
    if any(b >= a for a, b in zip(self.levels, self.levels[1:])) or min(self.levels) <= 0:
      raise ValueError(f"objective.levels must be positive and decreasing, got {self.levels}")
    if min(self.level_probs) < 0 or abs(sum(self.level_probs) - 1.0) > 1e-6:
      raise ValueError(f"objective.level_probs must be non-negative and sum to 1, got {self.level_probs}")
    if self.regression_weight > 0:
      check_distance(self.regression_distance, self.lpips)

  def student_sample(self, params, batch, rng, step):
    """(x0_hat (B, ...) differentiable in params['generator'], labels or None, level index (B,))."""
    del step
    network = self.groups["generator"].network
    k_z, k_level, k_sim, k_label = jax.random.split(rng, 4)
    x = batch["x"]
    z = batch["noise"].astype(x.dtype) if "noise" in batch else jax.random.normal(k_z, x.shape)
    cond = None
    if _num_classes(network):
      cond = batch["label"] if "label" in batch else jax.random.randint(k_label, x.shape[:1], 0,
                                                                         _num_classes(network))
    levels = jnp.asarray(self.levels, jnp.float32)
    k = jax.random.categorical(k_level, jnp.log(jnp.asarray(self.level_probs)), shape=x.shape[:1])
    x_in = levels[0] * z
    if len(self.levels) > 1:  # backward simulation: the student's own rollout, not differentiated
      frozen = jax.lax.stop_gradient(params["generator"])

      def rollout(x_prev, j):
        x0 = network.denoise(frozen, x_prev, jnp.full(x.shape[:1], levels[j - 1]), cond)
        x_next = x0 + levels[j] * jax.random.normal(jax.random.fold_in(k_sim, j), x.shape)
        return x_next, x_next

      _, later = jax.lax.scan(rollout, x_in, jnp.arange(1, len(self.levels)))
      x_in = jax.lax.stop_gradient(jnp.concatenate([x_in[None], later])[k, jnp.arange(x.shape[0])])
    x_hat = network.denoise(params["generator"], x_in, levels[k], cond)
    return x_hat, cond, k

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    del aux, teacher_params
    pairs = full_set_rows(batch)
    if self.regression_weight <= 0 or "noise" not in pairs:
      return jnp.zeros(()), {}
    if pairs is not batch:  # the full set's pairs, all at the one-step level
      network, sigma = self.groups["generator"].network, self.levels[0]
      cond = pairs.get("label") if _num_classes(network) else None
      x_hat = network.denoise(params["generator"], sigma * pairs["noise"].astype(pairs["x"].dtype),
                              jnp.full(pairs["x"].shape[:1], sigma), cond)
      first = jnp.ones(x_hat.shape[:1])
    else:
      x_hat, _, k = self.student_sample(params, batch, rng, step)
      first = (k == 0).astype(jnp.float32)
    reg = distance(x_hat, pairs["x"].astype(x_hat.dtype), self.regression_distance, lpips=self.lpips)
    reg = jnp.sum(first * reg) / jnp.maximum(jnp.sum(first), 1.0)
    return self.regression_weight * reg, {"regression": reg}


@dataclasses.dataclass(frozen=True)
class WithPool(WrappedObjective):
  """See the module docstring: `base` plus a discriminator pool on its student group."""

  base: object
  pool: object  # distill.pool.DiscriminatorPool
  pool_optim: dict
  student_group: str
  weight: float = 1.0
  weight_mode: str = "fixed"
  calibration_steps: int = 100
  start: int = 0

  def __post_init__(self):
    if self.weight_mode not in WEIGHT_MODES:
      raise ValueError(f"objective.pool.weight_mode must be one of {', '.join(WEIGHT_MODES)}, got "
                       f"{self.weight_mode!r}")
    if not hasattr(self.base, "student_sample"):
      raise ValueError(f"{type(self.base).__name__} cannot take a discriminator pool (it has no student_sample)")

  @property
  def groups(self) -> dict:
    return {"pool": ParamGroup(self.pool, self.pool_optim), **self.base.groups}

  def init_aux(self, params, teacher_params, rng):
    return {"base": self.base.init_aux(params, teacher_params, rng),
            "pool": {"age": self.pool.initial_ages(), "ratio_sum": jnp.zeros(()), "ratio_count": jnp.zeros(())}}

  def post_update(self, params, aux, step):
    return {**aux, "base": self.base.post_update(params, aux["base"], step)}

  def _real_labels(self, batch):
    return batch.get("label") if self.pool.num_classes else None

  def adversarial_weight(self, aux, step, ratio_now):
    """weight (fixed) or weight x the mean gradient-norm ratio so far, this step's included while calibrating
    (grad_match); 0 before `start`."""
    if self.weight_mode == "fixed":
      w = jnp.asarray(self.weight, jnp.float32)
    else:
      calibrating = step < self.start + self.calibration_steps
      s, n = aux["pool"]["ratio_sum"], aux["pool"]["ratio_count"]
      w = self.weight * jnp.where(calibrating, (s + ratio_now) / (n + 1.0), s / jnp.maximum(n, 1.0))
    return jnp.where(step >= self.start, w, 0.0)

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    k_base, k_student, k_pool = jax.random.split(rng, 3)
    if group == "pool":
      x_fake, cond_fake, _ = self.base.student_sample(params, batch, k_student, step)
      loss, metrics, mask = self.pool.discriminator_loss(params["pool"], teacher_params,
                                                         batch["x"].astype(x_fake.dtype), x_fake,
                                                         self._real_labels(batch), cond_fake, k_pool)
      return loss, {**metrics, UPDATE_MASK: mask}
    if group != self.student_group:
      return self.base.loss(group, params, aux["base"], teacher_params, batch, k_base, step)

    def base(sp):
      return self.base.loss(group, {**params, group: sp}, aux["base"], teacher_params, batch, k_base, step)

    def adversarial(sp):
      x_hat, cond, _ = self.base.student_sample({**params, group: sp}, batch, k_student, step)
      return self.pool.generator_loss(params["pool"], teacher_params, x_hat, cond, k_pool)

    total, (base_loss, adv, metrics, base_norm, adv_norm, w) = _two_term_loss(
        base, adversarial, lambda ratio: self.adversarial_weight(aux, step, ratio))(params[group])
    ratio = base_norm / jnp.maximum(adv_norm, 1e-12)
    return total, {**metrics, "base": base_loss, "adversarial": adv, "adversarial_weight": w,
                   "grad_norm_base": base_norm, "grad_norm_adversarial": adv_norm, "grad_ratio": ratio}

  def post_group_update(self, group, params, aux, metrics, rng, step):
    """'pool': refresh (re-initialise each head with probability `refresh`, zero its moments, reset its age);
    the student group: accumulate the gradient-norm ratio while calibrating."""
    if group == "pool":
      params, hit, ages = self.pool.refresh(params, aux["pool"]["age"], rng)
      stacked_ages = jnp.concatenate(list(ages.values()))
      metrics = {**metrics, "refreshed": jnp.mean(jnp.concatenate(list(hit.values())).astype(jnp.float32)),
                 "age_mean": jnp.mean(stacked_ages), "age_max": jnp.max(stacked_ages),
                 "age_hist": stacked_ages}
      return params, hit, {**aux, "pool": {**aux["pool"], "age": ages}}, metrics
    if group == self.student_group and self.weight_mode == "grad_match":
      calibrating = (step >= self.start) & (step < self.start + self.calibration_steps)
      pool_aux = {**aux["pool"],
                  "ratio_sum": aux["pool"]["ratio_sum"] + jnp.where(calibrating, metrics["grad_ratio"], 0.0),
                  "ratio_count": aux["pool"]["ratio_count"] + calibrating.astype(jnp.float32)}
      return params, None, {**aux, "pool": pool_aux}, metrics
    return params, None, aux, metrics


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _two_term_loss(base, adversarial, weight_of_ratio):
  """p -> (base(p) + w adversarial(p), (base, adversarial, base metrics, ||grad base||, ||grad adversarial||, w))
  with w = weight_of_ratio(||grad base|| / ||grad adversarial||), not differentiated. Each term's gradient is
  computed once, in the forward pass, and the backward pass returns their weighted sum: the gradient norms of both
  terms come at the cost of one backward pass per term, every step."""

  def forward(p):
    lb, vjp_base, metrics = jax.vjp(base, p, has_aux=True)
    la, vjp_adv = jax.vjp(adversarial, p)
    gb, = vjp_base(jnp.ones_like(lb))
    ga, = vjp_adv(jnp.ones_like(la))
    nb, na = _norm(gb), _norm(ga)
    w = jax.lax.stop_gradient(weight_of_ratio(nb / jnp.maximum(na, 1e-12)))
    return (lb + w * la, (lb, la, metrics, nb, na, w)), (gb, ga, w)

  @jax.custom_vjp
  def combined(p):
    return forward(p)[0]

  def backward(residuals, cotangents):
    gb, ga, w = residuals
    ct = cotangents[0]
    return (jax.tree.map(lambda b, a: ct * (b + w * a), gb, ga),)

  combined.defvjp(forward, backward)
  return combined


"""NitroFusion's dynamic discriminator pool: many small heads on the frozen teacher's features (spec
adversarial_multistudent.md sections 5 and 7).

Conventions. Samples are noised on the EDM path, x_sigma = x0 + sigma * eps. Discriminator noise levels are drawn as
the noise fraction u = sigma / (1 + sigma) in (0, 1) (u = 1 - t for rectified-flow time t, data at t = 1), so
sigma = u / (1 - u). [u_min, u_max] is split into `groups` equal bins, the noise groups; an example's group is the
bin of its u, and the heads of group g judge only the examples of group g.

Layout. For each (feature layer, head kind) -- a "slot" -- the pool holds groups * heads_per_slot heads stacked on a
leading axis (head i belongs to group i // heads_per_slot) and applied with vmap. Head kinds: 'global' / 'local'
(one logit per example / per position) and their conditional versions 'global_cond' / 'local_cond' (projection on
the class label). Per step, `sample_per_slot` heads of every group are drawn in every slot; only they are evaluated
and trained. The loss of a slot is the mean over its drawn heads of each head's mean loss over its group's examples
(and over positions for a local head); the pool's loss is the mean over slots.

Losses: 'ns' (non-saturating: D softplus(-l_real) + softplus(l_fake), G softplus(-l_fake)) and 'hinge' (D relu(1 -
l_real) + relu(1 + l_fake), G -l_fake); with all logits 0 the D loss is 2 log 2 = 1.386 (ns) or 2 (hinge). Optional
R1 on the head inputs: r1_weight / 2 * E ||d(real logits) / d(features)||^2.

Masked update and refresh (trainer hooks, distill/objectives/base.py): the discriminator loss returns, under
UPDATE_MASK, which heads were trained (drawn and their group present in the batch), so the trainer keeps every other
head's parameters and Adam moments bit-identical (a zero gradient is not a zero Adam update). After each update
every head is re-initialised with probability `refresh` and its moments are zeroed; head ages (steps since the last
re-initialisation) live in the objective's state. The pool is replicated on every device; teacher features stay
sharded with the batch.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
from flax import nnx

from distill import tree_masks
from distill.errors import UserError
from models.heads import DiscriminatorHead

KINDS = {"global": ("global", False), "local": ("local", False), "global_cond": ("global", True),
         "local_cond": ("local", True)}
LOSSES = ("ns", "hinge")
T_DISTS = ("groups", "uniform", "logitnormal", "shifted", "clean")


@dataclasses.dataclass(frozen=True)
class PoolConfig:
  """See the module docstring. t_dist: 'groups' (stratified: example b in group b mod G, u uniform in its bin),
  'uniform' (u ~ U[u_min, u_max]), 'logitnormal' (u = sigmoid(logit_mean + logit_std n), clipped), 'shifted'
  (u = shift v / ((shift - 1) v + 1), v ~ U[u_min, u_max]) or 'clean' (u = u_min: nearly clean inputs)."""

  layers: tuple[str, ...]
  kinds: tuple[str, ...] = ("global", "local")
  groups: int = 4
  heads_per_slot: int = 4
  sample_per_slot: int = 1
  refresh: float = 0.01
  loss: str = "ns"
  r1_weight: float = 0.0
  hidden: int = 64
  t_dist: str = "groups"
  u_min: float = 0.02
  u_max: float = 0.98
  logit_mean: float = 0.0
  logit_std: float = 1.0
  shift: float = 1.0

  def __post_init__(self):
    bad = [k for k in self.kinds if k not in KINDS]
    if bad or not self.kinds:
      raise ValueError(f"unknown pool head kind(s) {bad or list(self.kinds)}; choose from {', '.join(KINDS)}")
    if self.loss not in LOSSES:
      raise ValueError(f"unknown pool loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
    if self.t_dist not in T_DISTS:
      raise ValueError(f"unknown pool t_dist {self.t_dist!r}; choose one of {', '.join(T_DISTS)}")
    if not 1 <= self.sample_per_slot <= self.heads_per_slot or self.groups < 1:
      raise ValueError(f"pool needs groups >= 1 and 1 <= sample_per_slot <= heads_per_slot, got groups="
                       f"{self.groups}, sample_per_slot={self.sample_per_slot}, heads_per_slot={self.heads_per_slot}")
    if not 0.0 < self.u_min < self.u_max < 1.0:
      raise ValueError(f"pool noise fractions need 0 < u_min < u_max < 1, got {self.u_min}, {self.u_max}")
    if not 0.0 <= self.refresh <= 1.0:
      raise ValueError(f"pool refresh is a probability per head and step, got {self.refresh}")

  @property
  def stack(self) -> int:
    """Heads per slot over all groups."""
    return self.groups * self.heads_per_slot


def phi_real(kind: str, logits):
  return jax.nn.softplus(-logits) if kind == "ns" else jax.nn.relu(1.0 - logits)


def phi_fake(kind: str, logits):
  return jax.nn.softplus(logits) if kind == "ns" else jax.nn.relu(1.0 + logits)


def phi_generator(kind: str, logits):
  return jax.nn.softplus(-logits) if kind == "ns" else -logits


def _spatial_mean(a):
  """(H, B, ...) -> (H, B): the mean over a local head's positions."""
  return a.reshape(a.shape[:2] + (-1,)).mean(axis=-1)


@dataclasses.dataclass(frozen=True)
class DiscriminatorPool:
  """The pool for a frozen teacher network; behaves as a ParamGroup network (init, abstract_params)."""

  config: PoolConfig
  teacher_network: object
  feature_shapes: tuple  # ((layer, per-example shape), ...)
  num_classes: int = 0

  @classmethod
  def create(cls, config: PoolConfig, teacher_network, data_shape) -> "DiscriminatorPool":
    """Validates the layer names against the teacher and reads each layer's feature shape."""
    teacher_network.check_feature_names(config.layers)
    num_classes = dict(teacher_network.model_kwargs).get("num_classes", 0)
    if any(KINDS[k][1] for k in config.kinds) and not num_classes:
      raise ValueError("conditional pool heads (global_cond, local_cond) need a class-conditional teacher")
    x = jax.ShapeDtypeStruct((1, *data_shape), jnp.float32)
    sigma = jax.ShapeDtypeStruct((1,), jnp.float32)
    cond = jax.ShapeDtypeStruct((1,), jnp.int32) if num_classes else None
    shapes = jax.eval_shape(
        lambda x, s, c: teacher_network.features(teacher_network.abstract_params(), x, s, c, config.layers),
        x, sigma, cond)
    pool = cls(config, teacher_network, tuple((k, tuple(shapes[k].shape[1:])) for k in config.layers), num_classes)
    for layer, kind in pool.slots:
      pool._head(layer, kind, jax.random.key(0))  # a local head on vector features fails here, by name
    return pool

  # ----- parameters --------------------------------------------------------------------------------------------

  @property
  def slots(self) -> tuple[tuple[str, str], ...]:
    return tuple((layer, kind) for layer in self.config.layers for kind in self.config.kinds)

  @staticmethod
  def slot_name(layer: str, kind: str) -> str:
    return f"{layer}-{kind}"

  def _head(self, layer: str, kind: str, key) -> DiscriminatorHead:
    shape = dict(self.feature_shapes)[layer]
    scope, conditional = KINDS[kind]
    try:
      return DiscriminatorHead(shape[-1], self.config.hidden, spatial=len(shape) == 3, scope=scope,
                               num_classes=self.num_classes if conditional else 0, rngs=nnx.Rngs(params=key))
    except ValueError as e:
      raise ValueError(f"pool head {kind!r} on layer {layer!r} (features {shape}): {e}") from None

  def _graphdef(self, layer: str, kind: str):
    return nnx.split(nnx.eval_shape(lambda: self._head(layer, kind, jax.random.key(0))), nnx.Param)[0]

  def init(self, rng) -> dict:
    """{slot name: nnx.State of the slot's heads stacked on a leading axis of length groups * heads_per_slot}."""
    out = {}
    for i, (layer, kind) in enumerate(self.slots):
      keys = jax.random.split(jax.random.fold_in(rng, i), self.config.stack)
      out[self.slot_name(layer, kind)] = jax.vmap(
          lambda k, layer=layer, kind=kind: nnx.split(self._head(layer, kind, k), nnx.Param)[1])(keys)
    return out

  def abstract_params(self) -> dict:
    return jax.eval_shape(self.init, jax.random.key(0))

  def num_params(self) -> int:
    return sum(int(a.size) for a in jax.tree.leaves(self.abstract_params()))

  def memory_estimate(self, batch_size: int) -> int:
    """Bytes a training step needs for the pool: parameters, Adam moments, EMA and gradients (float32), plus the
    drawn heads' activations on real and fake features, kept for the backward pass."""
    state = 5 * 4 * self.num_params()
    drawn = self.config.groups * self.config.sample_per_slot
    positions = {layer: math.prod(shape[:-1]) for layer, shape in self.feature_shapes}
    activations = sum(2 * 3 * 4 * drawn * batch_size * positions[layer] * self.config.hidden
                      for layer, _ in self.slots)
    return state + activations

  # ----- noise levels and drawn heads ----------------------------------------------------------------------------

  def sample_levels(self, rng, n: int):
    """(sigma (n,), noise group (n,) int32) of the discriminator inputs (see PoolConfig)."""
    c = self.config
    k_u, k_offset = jax.random.split(rng)
    width = (c.u_max - c.u_min) / c.groups
    if c.t_dist == "groups":
      group = (jnp.arange(n) + jax.random.randint(k_offset, (), 0, c.groups)) % c.groups
      u = c.u_min + (group + jax.random.uniform(k_u, (n,))) * width
    else:
      if c.t_dist == "uniform":
        u = jax.random.uniform(k_u, (n,), minval=c.u_min, maxval=c.u_max)
      elif c.t_dist == "logitnormal":
        u = jax.nn.sigmoid(c.logit_mean + c.logit_std * jax.random.normal(k_u, (n,)))
      elif c.t_dist == "shifted":
        v = jax.random.uniform(k_u, (n,), minval=c.u_min, maxval=c.u_max)
        u = c.shift * v / ((c.shift - 1.0) * v + 1.0)
      else:  # clean
        u = jnp.full((n,), c.u_min)
      u = jnp.clip(u, c.u_min, c.u_max)
      group = jnp.clip(jnp.floor((u - c.u_min) / width), 0, c.groups - 1).astype(jnp.int32)
    return u / (1.0 - u), group.astype(jnp.int32)

  def draw_heads(self, rng) -> dict:
    """{slot name: (groups * sample_per_slot,) stack indices}: sample_per_slot distinct heads of every group."""
    c = self.config
    out = {}
    for i, (layer, kind) in enumerate(self.slots):
      keys = jax.random.split(jax.random.fold_in(rng, i), c.groups)
      picks = jax.vmap(lambda k: jax.random.permutation(k, c.heads_per_slot)[:c.sample_per_slot])(keys)
      out[self.slot_name(layer, kind)] = (jnp.arange(c.groups)[:, None] * c.heads_per_slot + picks).reshape(-1)
    return out

  def head_groups(self) -> jax.Array:
    """(groups * sample_per_slot,) the group of each drawn head, in draw_heads' order."""
    return jnp.repeat(jnp.arange(self.config.groups), self.config.sample_per_slot)

  # ----- evaluation ----------------------------------------------------------------------------------------------

  def features(self, teacher_params, x, sigma, cond) -> dict:
    return self.teacher_network.features(teacher_params, x, sigma, cond, self.config.layers)

  def logits(self, params, drawn: dict, features: dict, labels) -> dict:
    """{slot name: (drawn heads, B) or (drawn heads, B, H, W) logits} of the drawn heads on the features."""
    out = {}
    for layer, kind in self.slots:
      name = self.slot_name(layer, kind)
      graphdef = self._graphdef(layer, kind)
      sub = jax.tree.map(lambda p: p[drawn[name]], params[name])
      out[name] = jax.vmap(lambda p: nnx.merge(graphdef, p)(features[layer], labels))(sub)
    return out

  def _weights(self, group):
    """(w (drawn heads, B): 1 / n_g on the examples of the head's group, present (drawn heads,): n_g > 0)."""
    same = (self.head_groups()[:, None] == group[None, :]).astype(jnp.float32)
    count = jnp.sum(same, axis=1)
    return same / jnp.maximum(count, 1.0)[:, None], count > 0

  def reduce(self, per_example: dict, group) -> jax.Array:
    """Pool loss from {slot: (drawn heads, B) per-example losses}: per head the mean over its group's examples, per
    slot the mean over heads whose group is present, then the mean over slots."""
    w, present = self._weights(group)
    per_slot = [jnp.sum(present * jnp.sum(w * v, axis=1)) / jnp.maximum(jnp.sum(present), 1)
                for v in per_example.values()]
    return jnp.mean(jnp.stack(per_slot))

  # ----- the two halves ------------------------------------------------------------------------------------------

  def discriminator_loss(self, params, teacher_params, x_real, x_fake, cond_real, cond_fake, rng):
    """(loss, metrics, update mask {slot: (stack,) bool}) of one discriminator step; x_fake is not differentiated."""
    k_level, k_real, k_fake, k_heads = jax.random.split(rng, 4)
    sigma, group = self.sample_levels(k_level, x_real.shape[0])
    s = sigma.reshape((-1,) + (1,) * (x_real.ndim - 1))
    noised = jnp.concatenate([x_real + s * jax.random.normal(k_real, x_real.shape),
                              jax.lax.stop_gradient(x_fake) + s * jax.random.normal(k_fake, x_fake.shape)])
    cond = None if cond_real is None else jnp.concatenate([cond_real, cond_fake])
    both = jax.lax.stop_gradient(self.features(teacher_params, noised, jnp.concatenate([sigma, sigma]), cond))
    n = x_real.shape[0]  # one teacher forward over real and fake rows together
    f_real, f_fake = {k: v[:n] for k, v in both.items()}, {k: v[n:] for k, v in both.items()}
    return self.loss_from_features(params, f_real, f_fake, cond_real, cond_fake, group, self.draw_heads(k_heads))

  def loss_from_features(self, params, f_real, f_fake, cond_real, cond_fake, group, drawn):
    """discriminator_loss on given teacher features {layer: (B, ...)} of the noised real and fake samples, their
    examples' noise groups (B,) and the drawn heads."""
    c = self.config
    l_real = self.logits(params, drawn, f_real, cond_real)
    l_fake = self.logits(params, drawn, f_fake, cond_fake)
    per_example = {k: _spatial_mean(phi_real(c.loss, l_real[k])) + _spatial_mean(phi_fake(c.loss, l_fake[k]))
                   for k in l_real}
    loss = self.reduce(per_example, group)
    metrics = self.logit_metrics(l_real, l_fake, group)
    if c.r1_weight > 0:
      def real_score(features):
        logits = self.logits(params, drawn, features, cond_real)
        return self.reduce({k: _spatial_mean(v) for k, v in logits.items()}, group)

      grads = jax.grad(real_score)(f_real)
      r1 = sum(jnp.mean(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1)) for g in grads.values())
      loss = loss + 0.5 * c.r1_weight * r1
      metrics["r1"] = r1
    _, present = self._weights(group)
    mask = {name: jnp.zeros((c.stack,), bool).at[idx].set(present) for name, idx in drawn.items()}
    return loss, metrics, mask

  def generator_loss(self, params, teacher_params, x_fake, cond, rng):
    """The adversarial term of the student: its samples (differentiated) judged by freshly drawn heads, whose
    parameters are not differentiated; gradients reach x_fake through the frozen teacher's features."""
    k_level, k_noise, k_heads = jax.random.split(rng, 3)
    sigma, group = self.sample_levels(k_level, x_fake.shape[0])
    s = sigma.reshape((-1,) + (1,) * (x_fake.ndim - 1))
    features = self.features(teacher_params, x_fake + s * jax.random.normal(k_noise, x_fake.shape), sigma, cond)
    logits = self.logits(jax.lax.stop_gradient(params), self.draw_heads(k_heads), features, cond)
    return self.reduce({k: _spatial_mean(phi_generator(self.config.loss, v)) for k, v in logits.items()}, group)

  def logit_metrics(self, l_real: dict, l_fake: dict, group) -> dict:
    """Per noise group and overall: mean real / fake logits, their gap, and how often each side is classified right
    (P(l_real > 0), P(l_fake < 0)), each head over its own group's examples."""
    w, _ = self._weights(group)
    stat = lambda f, logits: jnp.stack([jnp.sum(w * _spatial_mean(f(v)), axis=1) for v in logits.values()])
    real, fake = stat(lambda v: v, l_real), stat(lambda v: v, l_fake)  # (slots, drawn heads)
    real_ok = stat(lambda v: (v > 0).astype(jnp.float32), l_real)
    fake_ok = stat(lambda v: (v < 0).astype(jnp.float32), l_fake)
    heads = self.head_groups()
    metrics = {"logit_real": jnp.mean(real), "logit_fake": jnp.mean(fake), "logit_gap": jnp.mean(real - fake),
               "real_positive": jnp.mean(real_ok), "fake_negative": jnp.mean(fake_ok)}
    for g in range(self.config.groups):
      sel = (heads == g).astype(jnp.float32) / max(self.config.sample_per_slot, 1)
      metrics[f"logit_real_g{g}"] = jnp.mean(jnp.sum(real * sel, axis=1))
      metrics[f"logit_fake_g{g}"] = jnp.mean(jnp.sum(fake * sel, axis=1))
    return metrics

  # ----- refresh -------------------------------------------------------------------------------------------------

  def refresh(self, params, ages: dict, rng):
    """(params with each head re-initialised with probability `refresh`, {slot: (stack,) bool} of the re-initialised
    heads, ages advanced by one step and reset to 0 where re-initialised)."""
    k_pick, k_init = jax.random.split(rng)
    fresh = self.init(k_init)
    hit = {name: jax.random.bernoulli(jax.random.fold_in(k_pick, i), self.config.refresh, (self.config.stack,))
           for i, name in enumerate(params)}
    params = {name: tree_masks.select(hit[name], fresh[name], params[name]) for name in params}
    ages = {name: jnp.where(hit[name], 0, ages[name] + 1) for name in ages}
    return params, hit, ages

  def initial_ages(self) -> dict:
    return {self.slot_name(*slot): jnp.zeros((self.config.stack,), jnp.int32) for slot in self.slots}


def check_memory(pool: DiscriminatorPool, batch_size: int, limit_gb: float = 0.0) -> None:
  """A UserError with the estimate when the pool's training state and activations exceed `limit_gb` (0: the
  accelerator's memory, or the machine's RAM on CPU)."""
  need = pool.memory_estimate(batch_size)
  if limit_gb > 0:
    limit = limit_gb * 2**30
  else:
    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if need > limit:
    c = pool.config
    raise UserError(f"the discriminator pool needs about {need / 2**30:.1f} GiB ({pool.num_params():,} head "
                    f"parameters in {len(pool.slots)} slots x {c.stack} heads, {c.groups * c.sample_per_slot} drawn "
                    f"per slot at batch {batch_size}), more than the {limit / 2**30:.1f} GiB available: use fewer or "
                    "smaller heads (objective.pool.heads_per_slot, sample_per_slot, hidden) or layers")

"""The generic training step: sharding invariance, parameter groups, the non-finite guard, EMA, schedules."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny, tiny_two_network
from distill import data as data_lib
from distill import objectives
from distill import sharding as sharding_lib
from distill.objectives.teacher_training import FlowMatching
from distill.trainer import Trainer, ema_decay, learning_rate_schedule, make_optimizer



def _config(module=tiny):
  """The tiny config with an even smaller model (fast compiles) and no warm-up (step 0 already moves params)."""
  c = module.get_config()
  c.model.update(width=16, depth=1, emb_dim=8)
  c.optim.warmup_steps = 0
  return c


def _build(config, mesh, objective=None):
  source = data_lib.make_source(config.data.source, config.seed)
  objective = objective or objectives.build(config, source.spec)
  return Trainer(objective, mesh, config.sharding.rules, config.ema, config.seed), source


def _run(trainer, source, num_steps, batch_size=64):
  """Host copies of the state after init and after each step, and each step's metrics."""
  state = trainer.init_state()
  states, metrics = [jax.device_get(state)], []
  for step in range(num_steps):
    batch = sharding_lib.global_batch(source.global_batch(step, batch_size), trainer.mesh)
    state, m = trainer.step(state, None, batch)  # the old state is donated: keep only host copies
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return states, metrics


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def _counts(opt_state):
  """Every optax `count` in an optimizer state (adam's and the schedule's)."""
  return {int(np.asarray(c)) for _, c in optax.tree_utils.tree_get_all_with_path(opt_state, "count")}


# ----- sharding invariance and determinism ------------------------------------------------------------------------


def test_sharded_step_matches_single_device():
  """Pure data parallel (8x1), data + FSDP (4x2) and one device give the same parameters after 3 steps."""
  config = _config()
  meshes = {
      "data8": sharding_lib.make_mesh({"data": 8, "fsdp": 1}),
      "data4_fsdp2": sharding_lib.make_mesh({"data": 4, "fsdp": 2}),
      "single": sharding_lib.make_mesh({"data": 1, "fsdp": 1}),
  }
  finals = {}
  for name, mesh in meshes.items():
    trainer, source = _build(config, mesh)
    states, metrics = _run(trainer, source, 3)
    assert int(states[-1].step) == 3 and int(states[-1].first_bad_step) == -1
    finals[name] = (states, metrics)
    if name == "data4_fsdp2":  # the FSDP run really shards parameters
      spec = trainer.state_shardings.params["model"]["inp"]["kernel"].get_value().spec
      assert spec == jax.sharding.PartitionSpec("fsdp", None)
  ref_states, ref_metrics = finals["single"]
  for name in ("data8", "data4_fsdp2"):
    states, metrics = finals[name]
    # Identical initial parameters: initialisation does not depend on the mesh.
    assert _equal(states[0].params, ref_states[0].params), name
    for got, want in zip(states[1:], ref_states[1:]):
      # Cross-device reductions (loss mean, gradients) sum in a different order than on one device, so results
      # agree to float32 rounding, not bit for bit.
      for x, y in zip(_leaves(got.params), _leaves(want.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)
      for x, y in zip(_leaves(got.ema), _leaves(want.ema), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)
    for m, r in zip(metrics, ref_metrics):
      np.testing.assert_allclose(m["model/loss"], r["model/loss"], rtol=1e-5)
  # Parameters did move.
  assert not _equal(ref_states[-1].params, ref_states[0].params)


def test_same_seed_is_bit_exact():
  """Two fresh trainers with the same seed give identical parameters after 3 steps; another seed differs."""
  mesh = sharding_lib.make_mesh({"data": 8, "fsdp": 1})
  runs = [_run(*_build(_config(), mesh), 3)[0][-1] for _ in range(2)]
  assert _equal(runs[0].params, runs[1].params) and _equal(runs[0].opt_state, runs[1].opt_state)
  assert _equal(runs[0].ema, runs[1].ema)
  other = _config()
  other.seed = 1
  assert not _equal(_build(other, mesh)[0].init_state().params, runs[0].params)


# ----- EMA --------------------------------------------------------------------------------------------------------


def test_ema_decay_schedule():
  for n in (0, 1, 5, 100, 5000, 100_000):
    step = jnp.asarray(n, jnp.int32)
    np.testing.assert_allclose(ema_decay({"decay": 0.999, "warmup": True}, step), min(0.999, (1 + n) / (10 + n)),
                               rtol=1e-6)
    np.testing.assert_allclose(ema_decay({"decay": 0.999, "warmup": False}, step), 0.999, rtol=1e-7)
    np.testing.assert_allclose(ema_decay({"decay": 0.9}, step), 0.9, rtol=1e-7)  # warm-up is off by default


def test_ema_update_from_init():
  """After each step, ema = (1 - d) new + d old with d = min(0.999, (1 + n) / (10 + n)) at step n."""
  config = _config()
  assert config.ema.warmup and config.ema.decay == 0.999
  trainer, source = _build(config, sharding_lib.make_mesh({"data": 8, "fsdp": 1}))
  states, _ = _run(trainer, source, 2)
  assert _equal(states[0].ema, states[0].params)  # the EMA starts at the initial parameters
  for n in (0, 1):
    d = np.float32(min(0.999, (1 + n) / (10 + n)))
    s = np.float32(1) - d
    new, old = _leaves(states[n + 1].params), _leaves(states[n].ema)
    for e, p, o in zip(_leaves(states[n + 1].ema), new, old, strict=True):
      # optax.incremental_update's float32 formula; XLA's fusion differs from numpy by an ulp (observed), not more.
      np.testing.assert_allclose(e, s * p + (np.float32(1) - s) * o, rtol=1e-6, atol=1e-7)
  assert not _equal(states[1].ema, states[1].params)


# ----- two parameter groups ---------------------------------------------------------------------------------------


def test_two_network_update_schedule():
  """Group 'a' updates every step; group 'b' (b_every=2, offset 1) only on odd steps, with its own optimizer."""
  config = _config(tiny_two_network)
  assert config.objective.b_every == 2
  trainer, source = _build(config, sharding_lib.make_mesh({"data": 8, "fsdp": 1}))
  assert list(trainer.objective.groups) == ["a", "b"]
  states, metrics = _run(trainer, source, 6)
  for step in range(6):
    before, after = states[step], states[step + 1]
    assert not _equal(after.params["a"], before.params["a"]), step
    assert _counts(after.opt_state["a"]) == {step + 1}
    updated = step % 2 == 1
    assert metrics[step]["a/updated"] == 1.0 and metrics[step]["b/updated"] == float(updated)
    assert _counts(after.opt_state["b"]) == {(step + 1) // 2}  # number of b updates so far
    if updated:
      assert not _equal(after.params["b"], before.params["b"]), step
      assert not _equal(after.ema["b"], before.ema["b"]), step
      assert metrics[step]["b/loss"] > 0 and metrics[step]["b/grad_norm"] > 0
    else:
      assert _equal(after.params["b"], before.params["b"]), step
      assert _equal(after.ema["b"], before.ema["b"]), step
      assert _equal(after.opt_state["b"], before.opt_state["b"]), step
      assert metrics[step]["b/loss"] == 0.0 and metrics[step]["b/grad_norm"] == 0.0
  assert int(states[-1].first_bad_step) == -1

  # A first Adam step moves each parameter by lr * |g| / (|g| + eps): the group's learning rate wherever the
  # gradient is not tiny. The zero-initialised output layer is the only one with a non-zero first gradient.
  for group, step, lr in (("a", 0, 1e-3), ("b", 1, 3e-3)):
    delta = np.abs(np.asarray(states[step + 1].params[group]["out"]["kernel"][...])
                   - np.asarray(states[step].params[group]["out"]["kernel"][...]))
    assert delta.max() <= lr * (1 + 1e-3)
    np.testing.assert_allclose(np.median(delta), lr, rtol=1e-2)

  # The group optimizers on a known gradient: clipping keeps the sign, Adam's first step is -lr * sign(g).
  params = states[0].params["b"]
  grads = jax.tree.map(lambda p: np.full(p.shape, 0.5, np.float32), params)
  for group, lr in (("a", 1e-3), ("b", 3e-3)):
    tx = trainer.txs[group]
    updates, _ = tx.update(grads, tx.init(params), params)
    for u in _leaves(updates):
      np.testing.assert_allclose(u, -lr, rtol=1e-4)


# ----- non-finite guard -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _NaNAtSteps(FlowMatching):
  """Flow matching whose loss (and so its gradient) is NaN at the given steps."""

  bad_steps: tuple = (2, 4)

  def loss(self, group, params, aux, teacher_params, batch, rng, step):
    loss, metrics = super().loss(group, params, aux, teacher_params, batch, rng, step)
    bad = jnp.any(step == jnp.asarray(self.bad_steps))
    return loss * jnp.where(bad, jnp.nan, 1.0), metrics


def test_non_finite_step_is_skipped():
  """A NaN step leaves params, optimizer state and EMA unchanged and records the first bad step; training goes on."""
  config = _config()
  base = objectives.build(config, data_lib.make_source(config.data.source, config.seed).spec)
  trainer, source = _build(config, sharding_lib.make_mesh({"data": 8, "fsdp": 1}),
                           _NaNAtSteps(groups=base.groups))
  states, metrics = _run(trainer, source, 5)
  for step in range(5):
    before, after = states[step], states[step + 1]
    assert int(after.step) == step + 1
    if step in (2, 4):
      assert np.isnan(metrics[step]["model/loss"])
      assert _equal(after.params, before.params) and _equal(after.ema, before.ema), step
      assert _equal(after.opt_state, before.opt_state), step
    else:
      assert np.isfinite(metrics[step]["model/loss"])
      assert not _equal(after.params, before.params), step
    for leaf in _leaves(after.params):
      assert np.all(np.isfinite(leaf))
  assert [int(s.first_bad_step) for s in states] == [-1, -1, -1, 2, 2, 2]
  assert _counts(states[-1].opt_state["model"]) == {3}  # 5 steps, 2 of them skipped


# ----- schedules and optimizers -----------------------------------------------------------------------------------


def test_learning_rate_schedule_warmup_constant():
  sched = learning_rate_schedule({"learning_rate": 1e-3, "warmup_steps": 10})
  for step, want in ((0, 0.0), (1, 1e-4), (5, 5e-4), (9, 9e-4), (10, 1e-3), (11, 1e-3), (10_000, 1e-3)):
    np.testing.assert_allclose(sched(step), want, rtol=1e-6, atol=1e-12, err_msg=str(step))
  flat = learning_rate_schedule({"learning_rate": 2e-4})
  assert float(flat(0)) == np.float32(2e-4) and float(flat(123)) == np.float32(2e-4)


def test_learning_rate_schedule_cosine_and_linear():
  lr, warmup, decay = 1e-3, 10, 110
  sched = learning_rate_schedule({"learning_rate": lr, "warmup_steps": warmup, "schedule": "cosine",
                                  "decay_steps": decay})
  cosine = lambda s: lr * 0.5 * (1 + np.cos(np.pi * (s - warmup) / (decay - warmup)))
  for step, want in ((0, 0.0), (5, 5e-4), (10, lr), (35, cosine(35)), (60, lr / 2), (100, cosine(100)),
                     (110, 0.0), (500, 0.0)):
    np.testing.assert_allclose(sched(step), want, rtol=1e-5, atol=1e-10, err_msg=str(step))
  no_warmup = learning_rate_schedule({"learning_rate": lr, "schedule": "cosine", "decay_steps": 100})
  np.testing.assert_allclose([no_warmup(0), no_warmup(50), no_warmup(100)], [lr, lr / 2, 0.0], atol=1e-10)
  with pytest.raises(ValueError, match="schedule"):
    learning_rate_schedule({"learning_rate": lr, "schedule": "exponential"})
  linear = learning_rate_schedule({"learning_rate": lr, "schedule": "linear", "decay_steps": 100})  # PD's rounds
  np.testing.assert_allclose([linear(0), linear(25), linear(100), linear(150)], [lr, 0.75 * lr, 0.0, 0.0], atol=1e-10)
  held = learning_rate_schedule({"learning_rate": lr, "warmup_steps": warmup, "schedule": "cosine",
                                 "decay_start": 60, "decay_steps": decay})
  for step, want in ((5, 5e-4), (10, lr), (59, lr), (60, lr), (85, lr / 2), (110, 0.0)):
    np.testing.assert_allclose(held(step), want, rtol=1e-5, atol=1e-10, err_msg=f"decay_start, step {step}")
  with pytest.raises(ValueError, match="decay_start"):
    learning_rate_schedule({"learning_rate": lr, "schedule": "cosine", "decay_start": 200, "decay_steps": 100})


def test_make_optimizer():
  with pytest.raises(ValueError, match="optim.name"):
    make_optimizer({"name": "sgd", "learning_rate": 1e-3})
  params = {"w": np.array([1.0, -2.0, 3.0], np.float32)}
  grads = {"w": np.array([4.0, -0.5, 0.0], np.float32)}
  for name in ("adam", "adamw", "radam"):
    tx = make_optimizer({"name": name, "learning_rate": 0.1, "clip_norm": 1.0})
    updates, _ = tx.update(grads, tx.init(params), params)
    if name == "radam":  # rectified Adam takes plain momentum (SGD-like) steps early on: -lr * m_hat = -lr * g_clipped
      np.testing.assert_allclose(updates["w"], -0.1 * grads["w"] / np.linalg.norm(grads["w"]), rtol=1e-5)
    else:  # first Adam step: -lr * sign(g) (0 where g = 0); weight decay defaults to 0
      np.testing.assert_allclose(updates["w"], [-0.1, 0.1, 0.0], rtol=1e-5)
  decayed = make_optimizer({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5})
  updates, _ = decayed.update(grads, decayed.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1 * (np.sign(grads["w"]) + 0.5 * params["w"]), rtol=1e-5)
  # clip_norm = 0 disables clipping: RAdam's first step is then -lr * g itself.
  tx = make_optimizer({"name": "radam", "learning_rate": 0.1, "clip_norm": 0.0})
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.1 * grads["w"], rtol=1e-5)

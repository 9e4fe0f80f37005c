"""The discriminator pool (distill/pool.py, objectives/adversarial.py): spec adversarial_multistudent.md section 7.6
-- masked updates leave unselected heads (parameters and Adam moments) bit-identical, refresh re-initialises heads
with zero moments, no gradient reaches the teacher, finite non-zero generator gradients in bf16, the loss values at
zero logits, determinism, bit-identical resume, one head equals a plain discriminator -- plus teacher
features, composition with reflow and score distillation, multi-step sampling and bad input."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

import samplers
from configs import common, tiny, tiny_pool
from distill import api, cli, run, sharding
from distill.errors import UserError
from distill.networks import Network
from distill.pool import DiscriminatorPool, PoolConfig
from models.heads import DiscriminatorHead

MLP = dict(name="mlp", dim=2, width=32, depth=2, emb_dim=16)
UNET = dict(name="unet", resolution=8, in_channels=1, channels=(8, 16), num_blocks=1, attn_resolutions=(),
            num_classes=3)


def pool_config(bundle, **pool):
  c = tiny_pool.get_config()
  c.teacher.bundle = bundle
  c.objective.pool.update(pool)
  return c


def built(bundle, **pool):
  return run.build_run(pool_config(bundle, **pool))


def leaves(tree) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): np.asarray(jax.device_get(x)) for p, x in flat}


def one_step(b, state):
  local = b.source.local_batch(int(state.step), b.config.data.batch_size, 0, 1)
  return b.trainer.step(state, b.trainer.teacher_params(), sharding.global_batch(local, b.mesh))


def adam_moments(opt_state):
  """(mu, nu) of the pool's Adam state."""
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
           if isinstance(s, optax.ScaleByAdamState)]
  assert len(found) == 1
  return found[0].mu, found[0].nu


def per_head(tree) -> dict:
  """{slot: (stack, -1) array of every head's values concatenated} of a {slot: nnx.State} tree."""
  return {slot: np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in jax.tree.leaves(sub)], axis=1)
          for slot, sub in tree.items()}


def test_pool_masked_update_leaves_unselected_heads_bit_identical(tiny_teacher_bundle):
  b = built(tiny_teacher_bundle, refresh=0.0)
  state = b.trainer.init_state()
  for _ in range(6):  # every head has been drawn a few times: non-zero Adam moments everywhere
    state, _ = one_step(b, state)
  mu0, nu0 = adam_moments(state.opt_state["pool"])
  before = (per_head(state.params["pool"]), per_head(mu0), per_head(nu0))
  state, _ = one_step(b, state)
  mu1, nu1 = adam_moments(state.opt_state["pool"])
  after = (per_head(state.params["pool"]), per_head(mu1), per_head(nu1))
  config = b.objective.pool.config
  moved_unselected = 0
  for slot in before[0]:
    changed = [np.any(a[slot] != z[slot], axis=1) for a, z in zip(before, after)]
    np.testing.assert_array_equal(changed[0], changed[2])  # a head's parameters move iff its moments do
    per_group = changed[0].reshape(config.groups, config.heads_per_slot).sum(axis=1)
    np.testing.assert_array_equal(per_group, config.sample_per_slot)  # exactly the drawn heads of every group
    moved_unselected += int(np.sum(~changed[0] & np.any(before[1][slot] != 0, axis=1)))
  assert moved_unselected > 0  # unselected heads with non-zero momentum, which a plain Adam step would have moved
  assert all(np.all(np.asarray(a) == 7) for a in jax.tree.leaves(state.aux["pool"]["age"]))  # no refresh: 7 steps old


def test_pool_refresh_reinitialises_heads_with_zero_moments(tiny_teacher_bundle):
  b = built(tiny_teacher_bundle, refresh=0.0)
  pool = b.objective.pool
  params = pool.init(jax.random.key(3))
  ages = {k: jnp.full(v.shape, 7) for k, v in pool.initial_ages().items()}
  refresh_pool = DiscriminatorPool(PoolConfig(**{**pool.config.__dict__, "refresh": 0.5}), pool.teacher_network,
                                   pool.feature_shapes, pool.num_classes)
  rng = jax.random.key(11)
  new, hit, new_ages = refresh_pool.refresh(params, ages, rng)
  fresh = per_head(pool.init(jax.random.split(rng)[1]))
  old, new = per_head(params), per_head(new)
  assert 0 < sum(int(h.sum()) for h in hit.values()) < sum(h.size for h in hit.values())
  for slot in old:
    h = np.asarray(hit[slot])
    np.testing.assert_array_equal(new[slot][h], fresh[slot][h])
    np.testing.assert_array_equal(new[slot][~h], old[slot][~h])
    np.testing.assert_array_equal(np.asarray(new_ages[slot]), np.where(h, 0, 8))

  # Through the trainer: refresh 1 re-initialises every head after its update, moments zeroed, ages reset.
  b = built(tiny_teacher_bundle, refresh=1.0)
  state = b.trainer.init_state()
  for _ in range(2):
    state, metrics = one_step(b, state)
  mu, nu = adam_moments(state.opt_state["pool"])
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves((mu, nu)))
  assert all(np.all(np.asarray(a) == 0) for a in jax.tree.leaves(state.aux["pool"]["age"]))
  assert float(metrics["pool/refreshed"]) == 1.0


def _pool(model, layers, kinds=("global",), **config):
  net = Network.create(model, dict(name="edm", sigma_data=0.5))
  shape = (2,) if model["name"] == "mlp" else (8, 8, 1)
  return net, DiscriminatorPool.create(PoolConfig(layers=layers, kinds=kinds, groups=2, heads_per_slot=2, **config),
                                       net, shape)


def test_pool_no_gradient_reaches_teacher_parameters_and_generator_gradient_is_finite_in_bf16():
  model = {**MLP, "num_classes": 3}
  net, pool = _pool(model, ("block0", "block1"), kinds=("global", "global_cond"))
  teacher = net.init(jax.random.key(0))
  params = pool.init(jax.random.key(1))
  x = jax.random.normal(jax.random.key(2), (6, 2))
  labels = jnp.arange(6) % 3
  d_loss = lambda t, p: pool.discriminator_loss(p, t, x, 0.5 * x, labels, labels, jax.random.key(3))[0]
  g_loss = lambda t, xf: pool.generator_loss(params, t, xf, labels, jax.random.key(4))
  for grads in (jax.jit(jax.grad(d_loss))(teacher, params), jax.jit(jax.grad(g_loss))(teacher, x)):
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))
  head_grads = jax.jit(jax.grad(d_loss, argnums=1))(teacher, params)  # ... while the heads do learn
  assert np.any(np.asarray(head_grads["block1-global_cond"]["embed"]["embedding"]) != 0)

  bf16_net = Network.create({**model, "compute_dtype": "bfloat16"}, dict(name="edm", sigma_data=0.5))
  bf16_pool = DiscriminatorPool(pool.config, bf16_net, pool.feature_shapes, pool.num_classes)
  bf16_teacher = jax.tree.map(lambda a: a.astype(jnp.bfloat16), teacher)
  g = jax.jit(jax.grad(lambda xf: bf16_pool.generator_loss(params, bf16_teacher, xf, labels, jax.random.key(4))))(x)
  assert g.dtype == jnp.float32 and np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0)


@pytest.mark.parametrize("loss, value", [("hinge", 2.0), ("ns", 2 * np.log(2.0))])
def test_pool_loss_at_zero_logits(loss, value):
  """With every head's logits 0 (zero output layer) the discriminator loss is 2 (hinge) or 2 log 2 (ns), the
  generator's 0 (hinge: -l) or log 2 (ns)."""
  net, pool = _pool(MLP, ("block0", "block1"), loss=loss)
  params = pool.init(jax.random.key(1))
  params = {k: jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.zeros_like(a) if "out" in jax.tree_util.keystr(p) else a, v) for k, v in params.items()}
  teacher = net.init(jax.random.key(0))
  x = jax.random.normal(jax.random.key(2), (8, 2))
  d, metrics, mask = jax.jit(lambda p, t: pool.discriminator_loss(p, t, x, x + 1.0, None, None,
                                                                   jax.random.key(3)))(params, teacher)
  assert float(d) == pytest.approx(value, rel=1e-6)
  assert float(metrics["logit_gap"]) == 0.0 and all(int(m.sum()) == 2 for m in mask.values())
  g = pool.generator_loss(params, teacher, x, None, jax.random.key(4))
  assert float(g) == pytest.approx(0.0 if loss == "hinge" else np.log(2.0), abs=1e-6)


def test_pool_of_one_head_equals_a_plain_discriminator_on_the_same_features():
  net, pool = _pool(MLP, ("block1",), loss="ns")
  one = DiscriminatorPool(PoolConfig(layers=("block1",), kinds=("global",), groups=1, heads_per_slot=1,
                                     sample_per_slot=1, refresh=0.0), net, pool.feature_shapes)
  params = one.init(jax.random.key(5))
  head = DiscriminatorHead(32, 64, spatial=False, rngs=nnx.Rngs(params=0))
  graphdef, _ = nnx.split(head, nnx.Param)
  plain = jax.tree.map(lambda a: a[0], params["block1-global"])
  f_real = {"block1": jax.random.normal(jax.random.key(6), (10, 32))}
  f_fake = {"block1": jax.random.normal(jax.random.key(7), (10, 32)) + 0.3}
  group, drawn = jnp.zeros(10, jnp.int32), one.draw_heads(jax.random.key(8))

  def pool_loss(p):
    return one.loss_from_features({"block1-global": p}, f_real, f_fake, None, None, group, drawn)[0]

  def plain_loss(p):
    h = lambda u: nnx.merge(graphdef, p)(u)
    return jnp.mean(jax.nn.softplus(-h(f_real["block1"])) + jax.nn.softplus(h(f_fake["block1"])))

  stacked = params["block1-global"]
  assert float(jax.jit(pool_loss)(stacked)) == pytest.approx(float(jax.jit(plain_loss)(plain)), rel=1e-6)
  g_pool = jax.tree.map(lambda a: a[0], jax.jit(jax.grad(pool_loss))(stacked))
  for a, b in zip(jax.tree.leaves(g_pool), jax.tree.leaves(jax.jit(jax.grad(plain_loss))(plain))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  _, _, mask = one.loss_from_features(params, f_real, f_fake, None, None, group, drawn)
  assert bool(mask["block1-global"][0])  # the single head is always trained: the update is plain Adam's


def test_teacher_features_are_the_networks_own_activations_pool():
  """MLP: the last block's features give the network's output through its output layers; U-Net: a truncated
  forward gives the same activations as the full one, and gradients flow to the input."""
  net = Network.create(MLP, dict(name="edm", sigma_data=0.5))
  params = net.init(jax.random.key(0))
  x, sigma = jax.random.normal(jax.random.key(1), (5, 2)), jnp.full((5,), 0.7)
  feats = net.features(params, x, sigma, None, ("block1",))
  module = nnx.merge(net.graphdef, params)
  x_in, c_noise = net.parameterization.network_inputs(x, sigma)
  raw = module.out(jax.nn.silu(module.norm_out(feats["block1"])))
  np.testing.assert_allclose(raw, net.raw(params, x_in, c_noise), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="valid: input, block0, block1"):
    net.features(params, x, sigma, None, ("nope",))

  unet = Network.create(UNET, dict(name="edm", sigma_data=0.5))
  p = unet.init(jax.random.key(0))
  xi, labels = jax.random.normal(jax.random.key(1), (2, 8, 8, 1)), jnp.array([0, 2])
  features = jax.jit(unet.features, static_argnums=4)
  full = features(p, xi, jnp.ones(2), labels, unet.feature_names())
  assert unet.feature_names() == ("level0", "level1", "mid")
  assert full["level0"].shape == (2, 8, 8, 8) and full["mid"].shape == (2, 4, 4, 16)
  np.testing.assert_allclose(features(p, xi, jnp.ones(2), labels, ("level0",))["level0"], full["level0"],
                             rtol=1e-6, atol=1e-6)
  g = jax.jit(jax.grad(lambda xx: jnp.sum(unet.features(p, xx, jnp.ones(2), labels, ("mid",))["mid"] ** 2)))(xi)
  assert np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0)


def test_multi_student_pool_masked_update_and_refresh_per_student(tiny_teacher_bundle, tmp_path):
  """Two students on a noise partition of teacher pairs, each with its own pool (MultiStudentWithPostUpdate): per
  student, exactly the drawn heads of every group move (parameters and moments), and head ages advance per student."""
  pairs_dir = str(tmp_path / "pairs")
  api.make_pairs(pairs_dir, 256, teacher=tiny_teacher_bundle, steps=4)
  c = pool_config(tiny_teacher_bundle, refresh=0.0)
  c.data.source = f"pairs:{pairs_dir}"
  c.multi_student = common.multi_student_section(2, partition="noise")
  c.mesh.student = 2
  b = run.build_run(c)
  assert b.objective.num_students == 2 and b.source.partition_sizes[0] + b.source.partition_sizes[1] == 256
  state = b.trainer.init_state()
  for _ in range(6):
    state, _ = one_step(b, state)
  per_student_head = lambda tree: {  # {slot: (students, stack, -1)}
      slot: np.concatenate([np.asarray(x).reshape(x.shape[:2] + (-1,)) for x in jax.tree.leaves(sub)], axis=2)
      for slot, sub in tree.items()}
  mu0, nu0 = adam_moments(state.opt_state["pool"])
  before = [per_student_head(t) for t in (state.params["pool"], mu0, nu0)]
  state, metrics = one_step(b, state)
  mu1, nu1 = adam_moments(state.opt_state["pool"])
  after = [per_student_head(t) for t in (state.params["pool"], mu1, nu1)]
  config = b.objective.base.pool.config
  for slot in before[0]:
    for student in range(2):
      changed = [np.any(a[slot][student] != z[slot][student], axis=1) for a, z in zip(before, after)]
      np.testing.assert_array_equal(changed[0], changed[2])
      per_group = changed[0].reshape(config.groups, config.heads_per_slot).sum(axis=1)
      np.testing.assert_array_equal(per_group, config.sample_per_slot)
  ages = [np.asarray(a) for a in jax.tree.leaves(state.aux["pool"]["age"])]
  assert all(a.shape[0] == 2 and np.all(a == 7) for a in ages)
  assert np.isfinite(float(metrics["generator/loss"])) and "generator/loss_student1" in metrics
  c.multi_student.layout = "unroll"  # the students one after another: the same steps
  b = run.build_run(c)
  unrolled = b.trainer.init_state()
  for _ in range(7):
    unrolled, _ = one_step(b, unrolled)
  for got, want in zip(jax.tree.leaves((unrolled.params, unrolled.aux)), jax.tree.leaves((state.params, state.aux)),
                       strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_pool_is_deterministic_resumes_bit_identically_and_samples_its_schedule(tiny_teacher_bundle, tmp_path,
                                                                                  capsys):
  """Pool parameters, Adam moments, head ages and the stateless RNG all resume exactly: a run stopped at step 10 and
  resumed from its checkpoint to step 20 equals an uninterrupted 20-step run of the same seed (so training is
  deterministic). The stop is in-process (num_steps is resumable); a real kill -9 mid-run is
  tests/test_resume.py::test_kill_9_and_rerun_matches_uninterrupted_run. The exported two-level student samples at 1
  and 2 steps from the same weights."""
  stopped, clean = str(tmp_path / "stopped"), str(tmp_path / "clean")

  def config(num_steps):
    c = pool_config(tiny_teacher_bundle)
    c.train.update(num_steps=num_steps, ckpt_every=10, log_every=10)
    return c

  half = leaves(run.train(config(10), stopped))
  capsys.readouterr()
  resumed = leaves(run.train(config(20), stopped))
  assert "resuming from checkpoint step 10 " in capsys.readouterr().out
  uninterrupted = leaves(run.train(config(20), clean))
  assert any("pool" in k for k in resumed) and any("age" in k for k in resumed)
  assert resumed.keys() == uninterrupted.keys()
  for k in uninterrupted:
    np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)
  assert any(not np.array_equal(half[k], resumed[k]) for k in half if "pool" in k)  # the second half trained the pool
  assert any(np.any(v < 20) for k, v in resumed.items() if "age" in k)  # heads were refreshed: the RNG's draws too

  s = samplers.load(api.export(clean))
  assert s.meta["sampler"]["grid"] == "schedule" and s.default_steps == 1
  for steps in (1, 2):
    assert s.nfe(steps) == steps
    x = s.sample(jax.random.key(0), 16, steps=steps)
    assert x.shape == (16, 2) and np.all(np.isfinite(x))
  with pytest.raises(ValueError, match="steps must be 1..2"):
    s.sample(jax.random.key(0), 4, steps=3)
  np.testing.assert_array_equal(samplers.schedule_sigmas([999.0, 3.0, 1.0, 0.3], 2), [999.0, 1.0, 0.0])
  np.testing.assert_array_equal(samplers.schedule_sigmas([999.0, 3.0, 1.0, 0.3], 4)[:-1],
                                np.float32([999.0, 3.0, 1.0, 0.3]))


def test_pool_composes_with_reflow_and_score_distillation(tiny_teacher_bundle, tmp_path):
  """objective.adversarial=pool on one-step reflow distillation (stored pairs) and on SiD; the gradient-norm match
  sets the weight from the measured ratio."""
  pairs_dir = str(tmp_path / "pairs")
  api.make_pairs(pairs_dir, 256, teacher=tiny_teacher_bundle, steps=4)
  c = tiny.get_config()
  c.data.source = f"pairs:{pairs_dir}"
  c.teacher.bundle = tiny_teacher_bundle
  c.objective = common.reflow_objective(time="t0", adversarial="pool",
                                        pool=common.pool_section(("block1",), hidden=8, weight_mode="grad_match",
                                                                 calibration_steps=3))
  c.train.num_steps = 4
  state = run.train(c, str(tmp_path / "reflow"))
  rows = [r for r in run.reporting.read_metrics(str(tmp_path / "reflow")) if "model/grad_ratio" in r]
  assert rows and np.isfinite(rows[-1]["model/grad_ratio"]) and rows[-1]["model/adversarial_weight"] > 0
  assert float(state.aux["pool"]["ratio_count"]) == 3.0

  c = tiny.get_config()
  c.teacher.bundle = tiny_teacher_bundle
  c.objective = common.score_distillation_objective("sid", adversarial="pool",
                                                    pool=common.pool_section(("block0", "block1"), hidden=8))
  b = run.build_run(c)  # the step traced (not compiled): groups, shapes and the pool's metrics wire up
  batch = {"x": jax.ShapeDtypeStruct((64, 2), jnp.float32)}
  state, metrics = jax.eval_shape(b.trainer.step, b.trainer.abstract_state, b.trainer.teacher_params(), batch)
  assert list(b.objective.groups) == ["pool", "fake", "generator"] and b.objective.warmup_steps == 0
  assert {"pool/logit_gap", "pool/age_hist", "generator/adversarial", "fake/loss"} <= set(metrics)
  c.objective.update(gan_weight=0.1, discriminator=True)
  with pytest.raises(UserError, match="replaces the single discriminator"):
    run.build_run(c)


def test_pool_bad_input_is_one_line(tiny_teacher_bundle, tmp_path, capsys):
  base = ["train", "--config", "configs/tiny_pool.py", "--workdir", str(tmp_path / "w"),
          f"--config.teacher.bundle={tiny_teacher_bundle}"]
  for extra, fragment in [("--config.objective.pool.layers=('nope',)", "valid: input, block0, block1"),
                          ("--config.objective.pool.max_memory_gb=1e-6", "the discriminator pool needs about"),
                          ("--config.objective.pool.kinds=('local',)", "needs spatial feature maps"),
                          ("--config.objective.pool.kinds=('global_cond',)", "class-conditional teacher")]:
    capsys.readouterr()
    assert cli.main(base + [extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], (extra, err)


def test_toy2d_nitro_pool_contract(tmp_path, capsys):
  """The contract: `distill train --config configs/toy2d_nitro.py --workdir W --config.data.source=npz:P.npz` runs
  teacher, pairs and pool distillation; export gives a one-step student that `distill sample --steps 1` samples."""
  npz = tmp_path / "P.npz"
  np.savez(npz, points=np.random.default_rng(0).normal(size=(500, 2)) * [1.0, 0.3])
  workdir, bundle, out = tmp_path / "W", tmp_path / "B", tmp_path / "S.npz"
  small = ["--config.stages.teacher.config.train.num_steps=20", "--config.stages.pairs.num=512",
           "--config.stages.pairs.steps=4",
           "--config.stages.distill.config.train.num_steps=10", "--config.stages.distill.config.train.eval_every=0",
           "--config.stages.teacher.config.train.eval_every=0", "--config.mesh.data=1"]
  assert cli.main(["train", "--config", "configs/toy2d_nitro.py", "--workdir", str(workdir),
                   f"--config.data.source=npz:{npz}", *small]) == 0
  assert cli.main(["export", "--workdir", str(workdir), "--out", str(bundle)]) == 0
  capsys.readouterr()
  assert cli.main(["sample", "--sampler", str(bundle), "--num", "64", "--steps", "1", "--out", str(out)]) == 0
  assert "(1 NFE" in capsys.readouterr().out
  s = samplers.load(str(bundle))
  assert s.meta["provenance"]["objective"] == "adversarial"
  with np.load(out) as f:
    np.testing.assert_array_equal(f["samples"], s.sample(jax.random.key(0), 64, steps=1))

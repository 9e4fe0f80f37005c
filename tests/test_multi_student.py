"""Multi-student distillation (distill/stacked.py, partitions.py, partitioned_data.py, objectives/multi_student.py):
independence and exactness of the stacked students, sharding, partitions and data filters, routing, the bundle,
resume and bad input. Every test name contains multi_student (`pytest tests -k multi_student`)."""

import itertools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import samplers
from configs import common, tiny_msd
from distill import api, data as data_lib, partitions, run
from distill import sharding as sharding_lib
from distill.errors import UserError
from distill.partitioned_data import PartitionedSource
from distill.stacked import Router, student_params
from distill.trainer import make_optimizer


def _config(**overrides):
  c = tiny_msd.get_config()
  c.model.update(width=16, depth=1, emb_dim=8)
  c.optim.update(warmup_steps=0, clip_norm=0.05)  # clipping active: per-student clipping is part of the check
  c.update_from_flattened_dict(overrides)
  return c


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _steps(built, num_steps):
  state = built.trainer.init_state()
  for step in range(num_steps):
    batch = sharding_lib.global_batch(built.source.global_batch(step, built.config.data.batch_size), built.mesh)
    state, _ = built.trainer.step(state, None, batch)
  return jax.device_get(state)


@pytest.fixture(scope="module")
def built():
  return run.build_run(_config())


def test_multi_student_stacked_step_equals_separate_students(built):
  """One trainer step of 4 stacked students equals, student by student, the wrapped objective's own gradient step
  (its loss on that student's block of the batch with key fold_in(rng, k), its own clipping and Adam state)."""
  trainer, objective = built.trainer, built.objective
  state = trainer.init_state()
  before = jax.device_get(state)
  batch = built.source.global_batch(0, built.config.data.batch_size)
  after = jax.device_get(trainer.step(state, None, sharding_lib.global_batch(batch, built.mesh))[0])
  base, k = objective.base, objective.num_students
  tx = make_optimizer(base.groups["model"].optim)
  rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(built.config.seed), 0), 0)
  per = len(batch["x"]) // k

  @jax.jit
  def separate_step(params, block, key):
    grads = jax.grad(lambda p: base.loss("model", {"model": p}, {}, None, block, key, jnp.zeros((), jnp.int32))[0])(
        params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)

  for s in range(k):
    params = student_params(before.params["model"], s)
    block = {n: jnp.asarray(v[s * per:(s + 1) * per]) for n, v in batch.items()}
    expected = separate_step(params, block, jax.random.fold_in(rng, s))
    for got, want in zip(_leaves(student_params(after.params["model"], s)), _leaves(expected), strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_multi_student_gradients_are_independent_per_student(built):
  """Changing student 0's parameters and batch block leaves every other student's gradient bit-identical."""
  objective = built.objective
  params = built.trainer.init_state().params
  batch = {n: jnp.asarray(v) for n, v in built.source.global_batch(0, built.config.data.batch_size).items()}
  loss = lambda p, b: objective.loss("model", {"model": p}, objective.init_aux({"model": p}, None, jax.random.key(1)),
                                     None, b, jax.random.key(2), jnp.zeros((), jnp.int32))[0]
  grads = jax.jit(jax.grad(loss))(params["model"], batch)
  moved = jax.tree.map(lambda a: a.at[0].add(0.3), params["model"])
  per = batch["x"].shape[0] // objective.num_students
  shuffled = {**batch, "x": batch["x"].at[:per].multiply(-1.0)}
  grads_moved = jax.jit(jax.grad(loss))(moved, shuffled)
  for g, h in zip(_leaves(grads), _leaves(grads_moved), strict=True):
    assert np.array_equal(g[1:], h[1:])
    assert not np.array_equal(g[0], h[0])


def test_multi_student_sharded_over_student_axis_equals_one_device():
  """4 students on the 'student' axis x 2 on 'data' (8 devices) give the parameters of one device after 2 steps."""
  finals = {}
  for name, mesh in {"student4_data2": {"student": 4, "data": 2, "fsdp": 1},
                     "single": {"student": 1, "data": 1, "fsdp": 1}}.items():
    built = run.build_run(_config(**{f"mesh.{a}": n for a, n in mesh.items()}))
    if name == "student4_data2":
      spec = built.trainer.state_shardings.params["model"]["inp"]["kernel"].get_value().spec
      assert spec[0] == "student"
    finals[name] = _steps(built, 2)
  for a, b in zip(_leaves(finals["student4_data2"].params), _leaves(finals["single"].params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_multi_student_partitioned_batches_and_full_set_rows():
  """Block k of a batch holds only student k's classes; 'full_' rows are the whole-data stream; a noise router
  partitions pairs by their noise."""
  source = data_lib.make_source("toyset:8gaussians:4096", 0)
  router = Router("classes", 4, table=(0, 0, 1, 1, 2, 2, 3, 3))
  part = PartitionedSource(source, router, seed=0, full_set=True)
  batch = part.global_batch(3, 64)
  blocks = batch["label"].reshape(4, 16)
  assert all(set(blocks[k].tolist()) <= {2 * k, 2 * k + 1} for k in range(4))
  np.testing.assert_array_equal(batch["full_x"], source.global_batch(3, 64)["x"])
  assert len(set(batch["full_label"].tolist())) > 2
  # Rows of one process are those rows of the global batch.
  np.testing.assert_array_equal(part.local_batch(3, 64, 1, 2)["x"], batch["x"][32:])
  # Each partition is visited in its own epochs: 512 steps x 16 rows cover student 0's examples evenly.
  counts = np.bincount(np.concatenate([part.global_batch(s, 64)["label"][:16] for s in range(64)]), minlength=8)
  assert counts[2:].sum() == 0 and counts[0] + counts[1] == 64 * 16

  rng = np.random.default_rng(0)
  z = rng.standard_normal((512, 2)).astype(np.float32)
  pairs = data_lib.ArraySource(z @ np.array([[3.0, 0.0], [0.0, 0.1]], np.float32), None, 0, 0, extra={"noise": z})
  noise_router = Router("noise", 2, directions=partitions.noise_directions(pairs, 2))
  np.testing.assert_allclose(np.abs(noise_router.directions[0]), [1.0, 0.0], atol=1e-6)  # the dominant direction
  noisy = PartitionedSource(pairs, noise_router, seed=0).global_batch(0, 32)
  assert (noisy["noise"][:16, 0] <= 0).all() and (noisy["noise"][16:, 0] > 0).all()


def test_multi_student_partitions_blocks_kmeans_and_errors():
  source = data_lib.make_source("toyset:8gaussians:4096", 0)
  section = common.multi_student_section(4)
  assert partitions.fit_router(section, source, 0).table == (0, 0, 1, 1, 2, 2, 3, 3)
  section.partition = "kmeans"
  table = partitions.fit_router(section, source, 0).table
  # Balanced: two neighbouring modes per student (the modes sit on a circle, so each pair is adjacent).
  assert sorted(np.bincount(table).tolist()) == [2, 2, 2, 2]
  for s in range(4):
    a, b = [c for c in range(8) if table[c] == s]
    assert (b - a) % 8 in (1, 7)
  # Brute force on a small case: the balanced assignment has the least total squared distance of all balanced ones.
  pts = np.random.default_rng(1).standard_normal((6, 2))
  cents = np.random.default_rng(2).standard_normal((3, 2))
  cost = lambda a: sum(((pts[i] - cents[a[i]]) ** 2).sum() for i in range(6))
  balanced = [a for a in itertools.product(range(3), repeat=6) if np.bincount(a, minlength=3).tolist() == [2, 2, 2]]
  assign = partitions.balanced_assignment(pts, cents)
  assert np.bincount(assign).tolist() == [2, 2, 2]
  assert cost(assign) == pytest.approx(min(cost(a) for a in balanced))
  section = common.multi_student_section(3)
  with pytest.raises(UserError, match="multi_student.k=3 does not divide the 8 classes evenly"):
    partitions.fit_router(section, source, 0)
  with pytest.raises(UserError, match="data.batch_size=64 must be divisible by multi_student.k=3"):
    run.build_run(_config(**{"multi_student.partition": "table", "multi_student.k": 3,
                             "multi_student.table": (0, 0, 1, 1, 2, 2, 0, 1)}))
  with pytest.raises(UserError, match="unknown multi_student key"):
    partitions.fit_router(ml_collections.ConfigDict(dict(k=2, bogus=1)), source, 0)
  with pytest.raises(ValueError, match=r"labels \[9\] are outside every partition"):
    Router("classes", 4, table=(0, 0, 1, 1, 2, 2, 3, 3)).route(np.array([1, 9]))


def test_multi_student_bundle_routes_mixed_labels_and_checksums_every_student(tmp_path):
  """Train briefly, export: the bundle samples a mixed-label batch as the concatenation of per-student runs, records
  its router, and a change to any one student's parameters (or a router that does not match) is refused."""
  workdir = str(tmp_path / "msd")
  api.train(_config(**{"train.num_steps": 4, "train.ckpt_every": 4}), workdir)
  bundle = api.export(workdir)
  sampler = samplers.load(bundle)
  meta = json.load(open(os.path.join(bundle, "sampler.json")))
  assert meta["multi_student"]["router"]["table"] == [0, 0, 1, 1, 2, 2, 3, 3]
  labels = np.array([7, 0, 3, 3, 5, 1, 6, 2, 4, 0], np.int32)
  key = jax.random.key(5)
  mixed = sampler.sample(key, len(labels), labels=labels)
  single = samplers.generator.Generator(sampler.network.base, sampler.shape, sampler.meta["sampler"])
  for k in range(4):
    rows = np.flatnonzero(np.array(sampler.network.router.table)[labels] == k)
    for r in rows:  # sample r alone, by student k's parameters
      x = single.generate(student_params(sampler.params, k), key, 1, labels=labels[r:r + 1], first_index=r)
      np.testing.assert_allclose(mixed[r], x[0], atol=1e-5)
  # The students really differ, so routing matters.
  other = single.generate(student_params(sampler.params, 1), key, 1, labels=labels[:1])
  assert not np.allclose(other[0], mixed[0], atol=1e-4)

  import orbax.checkpoint as ocp
  params_dir = os.path.join(bundle, "params")
  with ocp.StandardCheckpointer() as ckptr:
    pure = ckptr.restore(params_dir)
  leaf_path = jax.tree_util.tree_flatten_with_path(pure)[0][0][0]
  tampered = jax.tree_util.tree_map_with_path(
      lambda p, a: np.asarray(a).copy() + (np.eye(len(a))[2].reshape((-1,) + (1,) * (a.ndim - 1)) * 1e-3
                                           if p == leaf_path else 0), pure)
  broken = str(tmp_path / "broken")
  shutil.copytree(bundle, broken)
  shutil.rmtree(os.path.join(broken, "params"))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(broken, "params"), tampered)
  with pytest.raises(UserError, match="checksum mismatch"):
    samplers.load(broken)
  with pytest.raises(UserError, match="4 routed students; StableHLO export takes a single-network bundle"):
    api.export(workdir, stablehlo=True)
  meta["multi_student"]["router"] = {**meta["multi_student"]["router"], "num_students": 2, "table": [0] * 4 + [1] * 4}
  meta["multi_student"]["num_students"] = 2
  json.dump(meta, open(os.path.join(bundle, "sampler.json"), "w"))
  with pytest.raises(UserError, match="router serves 2 students but the stored parameters hold \\[4\\]"):
    samplers.load(bundle)


def test_multi_student_full_set_rows_feed_the_paired_regression_term():
  """A multi-student batch's 'full_' rows (whole data set) are what the paired regression uses, not the partition's
  rows: the loss equals the loss on the full rows alone."""
  from distill.networks import Network
  from distill.objectives.adversarial import PairedStudent
  from distill.objectives.base import ParamGroup

  net = Network.create(dict(name="mlp", dim=2, width=16, depth=1, emb_dim=8), dict(name="edm"))
  student = PairedStudent(groups={"generator": ParamGroup(net, {})}, levels=(80.0,), level_probs=(1.0,),
                          regression_weight=1.0)
  params = {"generator": net.init(jax.random.key(0))}
  rng = np.random.default_rng(0)
  rows = lambda: {"x": jnp.asarray(rng.standard_normal((8, 2)), jnp.float32),
                  "noise": jnp.asarray(rng.standard_normal((8, 2)), jnp.float32)}
  partition, full = rows(), rows()
  loss = lambda b: float(student.loss("generator", params, {}, None, b, jax.random.key(1), 0)[0])
  mixed = {**partition, **{f"full_{k}": v for k, v in full.items()}}
  assert loss(mixed) == pytest.approx(loss(full), rel=1e-6)
  assert abs(loss(mixed) - loss(partition)) > 1e-3


def test_toy2d_multi_student_contract(tmp_path, capsys):
  """The contract: `distill train --config configs/toy2d_msd.py --workdir W --config.data.source=npz:P.npz
  --config.multi_student.k=K` runs teacher, pairs and K students on any labelled point cloud; export writes the
  routed bundle and `distill sample --labels L` samples class L through its student; a label outside every
  partition is one clear line."""
  from distill import cli

  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 800)
  centres = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
  npz = tmp_path / "P.npz"
  np.savez(npz, points=(centres[labels] + 0.1 * rng.standard_normal((800, 2))).astype(np.float32), labels=labels)
  workdir, bundle, out = tmp_path / "W", tmp_path / "B", tmp_path / "S.npz"
  small = ["--config.stages.teacher.config.train.num_steps=20", "--config.stages.pairs.num=512",
           "--config.stages.distill.config.train.num_steps=10", "--config.stages.distill.config.train.eval_every=0",
           "--config.stages.teacher.config.train.eval_every=0", "--config.multi_student.k=2", "--config.mesh.data=1"]
  assert cli.main(["train", "--config", "configs/toy2d_msd.py", "--workdir", str(workdir),
                   f"--config.data.source=npz:{npz}", *small]) == 0
  assert cli.main(["export", "--workdir", str(workdir), "--out", str(bundle)]) == 0
  capsys.readouterr()
  assert cli.main(["sample", "--sampler", str(bundle), "--num", "64", "--labels", "3", "--out", str(out)]) == 0
  s = samplers.load(str(bundle))
  assert s.network.router.table == (0, 0, 1, 1)
  with np.load(out) as f:
    np.testing.assert_array_equal(f["samples"], s.sample(jax.random.key(0), 64, labels=np.full(64, 3, np.int32)))
  assert cli.main(["sample", "--sampler", str(bundle), "--num", "4", "--labels", "7", "--out", str(out)]) != 0
  assert "outside every partition" in capsys.readouterr().err


@pytest.fixture(scope="module")
def conditional_teacher(tmp_path_factory):
  """A tiny class-conditional MLP teacher on 8 labelled Gaussians (configs/tiny_msd.py with multi-student off)."""
  c = _config(**{"train.num_steps": 10, "multi_student.k": 0})
  workdir = str(tmp_path_factory.mktemp("conditional_teacher"))
  api.train(c, workdir)
  return api.export(workdir)


@pytest.mark.parametrize("shared", [(), ("fake",)], ids=["own_fake_scores", "shared_fake_score"])
def test_multi_student_wraps_score_distillation(conditional_teacher, shared):
  """SiD under multi_student: generators (and fake scores, unless shared) stacked per student, the shared fake score
  trained on every student's samples; the generator block of student k only sees its classes."""
  c = _config(**{"teacher.bundle": conditional_teacher, "multi_student.k": 2})
  c.objective = common.score_distillation_objective("sid")
  c.multi_student.shared = shared
  c.optim.clip_norm = 0.0
  built = run.build_run(c)
  groups = built.objective.groups
  assert type(groups["generator"].network).__name__ == "StackedNetwork"
  assert (type(groups["fake"].network).__name__ == "StackedNetwork") == (not shared)
  state = built.trainer.init_state()
  teacher = built.trainer.teacher_params()
  for step in range(2):
    batch = sharding_lib.global_batch(built.source.global_batch(step, c.data.batch_size), built.mesh)
    state, metrics = built.trainer.step(state, teacher, batch)
  fake = jax.tree.leaves(state.params["fake"])[0]
  assert fake.shape[0] == 2 if not shared else fake.ndim == jax.tree.leaves(built.trainer.teacher_params())[0].ndim
  assert all(np.isfinite(float(metrics[f"generator/loss_student{k}"])) for k in range(2))
  # The two generators started equal (both from the teacher) and now differ: each followed its own classes.
  gen = _leaves(state.params["generator"])
  assert any(not np.allclose(g[0], g[1]) for g in gen)


def test_multi_student_teacher_score_matching_then_distillation_from_its_weights(conditional_teacher, tmp_path):
  """TSM: a student equal to the teacher has loss 0; then a pipeline trains two smaller students by TSM and starts
  two one-step reflow students from those stacked weights (init_stage)."""
  from distill.objectives.teacher_training import TeacherScoreMatching
  from distill.objectives.base import ParamGroup

  teacher = samplers.load(conditional_teacher)
  tsm = TeacherScoreMatching(groups={"model": ParamGroup(teacher.network, {})}, teacher_network=teacher.network)
  batch = {"x": jnp.ones((8, 2)), "label": jnp.arange(8) % 8}
  assert float(tsm.loss("model", {"model": teacher.params}, {}, teacher.params, batch, jax.random.key(0), 0)[0]) == 0

  small = lambda cfg: cfg.model.update(width=8) or cfg
  tsm_stage = small(_config(**{"train.num_steps": 4, "train.ckpt_every": 4}))
  tsm_stage.objective = common.teacher_score_matching_objective()
  distill = small(_config(**{"train.num_steps": 3, "train.ckpt_every": 3}))
  distill.objective = common.reflow_objective(time="t0")
  stages = {"teacher": common.train_stage(_config()),  # skipped: the pipeline's teacher.bundle is the teacher
            "pairs": common.pairs_stage("teacher", num=256, seed=1, steps=2),
            "tsm": common.train_stage(tsm_stage, teacher_stage="teacher"),
            "distill": common.train_stage(distill, data_stage="pairs", teacher_stage="teacher", init_stage="tsm")}
  c = common.multi_student_pipeline(stages, "toyset:8gaussians:4096")
  c.teacher.bundle = conditional_teacher
  c.stages.tsm.config.multi_student = c.multi_student
  c.multi_student.k = 2
  result = api.train(c, str(tmp_path / "w"))
  tsm_params = samplers.load(str(tmp_path / "w" / "tsm" / "export")).params
  student = samplers.load(result["bundle"])
  assert student.network.num_students == 2 and dict(student.network.model_kwargs)["width"] == 8
  first = lambda p: np.asarray(jax.tree.leaves(p)[0])
  assert first(tsm_params).shape == first(student.params).shape and first(tsm_params).shape[0] == 2


def test_multi_student_map_and_unroll_layouts_equal_vmap_layout(conditional_teacher):
  """layouts 'map' and 'unroll' (students one after another) train the same SiD students as the vmapped default,
  with a shared fake score (closed over whole) and stacked generators; an unknown layout is refused by name."""
  params = {}
  for layout in ("vmap", "map", "unroll"):
    c = _config(**{"teacher.bundle": conditional_teacher, "multi_student.k": 2})
    c.objective = common.score_distillation_objective("sid")
    c.multi_student.update(shared=("fake",), layout=layout)
    c.optim.clip_norm = 0.0
    built = run.build_run(c)
    state, teacher = built.trainer.init_state(), built.trainer.teacher_params()
    for step in range(2):
      batch = sharding_lib.global_batch(built.source.global_batch(step, c.data.batch_size), built.mesh)
      state, _ = built.trainer.step(state, teacher, batch)
    params[layout] = jax.device_get(state.params)
  for layout in ("map", "unroll"):
    for got, want in zip(_leaves(params[layout]), _leaves(params["vmap"]), strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  with pytest.raises(UserError, match="multi_student.layout"):
    run.build_run(_config(**{"multi_student.layout": "loop"}))

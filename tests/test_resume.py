"""Checkpointing and resume of distill.run.train: bit-exact resume (in-process, also of stacked students, and after
kill -9), restore onto another mesh, config checks, keep-last-N plus every-K, shape mismatches and the non-finite-loss
stop."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import ml_collections
import numpy as np
import pytest

from configs import tiny, tiny_msd, tiny_two_network
from distill import checkpointing, reporting, run
from distill.errors import NonFiniteLossError, UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(os.path.dirname(sys.executable), "distill")


def tiny_config(base=tiny, **overrides):
  """configs/tiny.py (or another config module) with dotted-key overrides, e.g. {'train.num_steps': 10}."""
  c = base.get_config()
  c.update_from_flattened_dict(overrides)
  return c


def leaves(tree) -> dict:
  """Path -> numpy copy of every leaf (fetched from the devices)."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): np.array(jax.device_get(x)) for p, x in flat}


def assert_same_leaves(a: dict, b: dict):
  assert a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
    assert np.array_equal(a[k], b[k]), f"{k} differs (max |diff| {np.abs(a[k] - b[k]).max()})"


def ckpt_steps(workdir) -> list[int]:
  d = os.path.join(workdir, checkpointing.CHECKPOINT_DIR)
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def restore(workdir, *steps):
  """Restore checkpoints `steps` of `workdir` onto the current devices, with the workdir's own config; one state per
  step (a single state for a single step)."""
  built = run.build_run(ml_collections.ConfigDict(checkpointing.read_config(str(workdir))))
  ckpts = checkpointing.Checkpoints(str(workdir))
  try:
    states = [ckpts.restore(step, built.trainer.abstract_sharded_state()) for step in steps]
  finally:
    ckpts.close()
  return states[0] if len(steps) == 1 else states


def metric_rows(workdir) -> list[dict]:
  return [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in reporting.read_metrics(str(workdir))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 20-step tiny run (mesh data=-1 -> 8 devices): its workdir and final state as numpy."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  state = run.train(tiny_config(), workdir)
  return types.SimpleNamespace(workdir=workdir, leaves=leaves(state))


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, reference, capsys):
  workdir = str(tmp_path / "b")
  half = leaves(run.train(tiny_config(**{"train.num_steps": 10}), workdir))
  assert ckpt_steps(workdir) == [10]
  capsys.readouterr()
  resumed = run.train(tiny_config(), workdir)  # num_steps is resumable: 10 -> 20
  assert "resuming from checkpoint step 10" in capsys.readouterr().out
  assert int(resumed.step) == 20
  final = leaves(resumed)
  assert_same_leaves(final, reference.leaves)
  # The second half did train (the state moved) and the checkpoints on disk match as well.
  assert not np.array_equal(half[".params['model']['out']['kernel'].value"],
                            final[".params['model']['out']['kernel'].value"])
  assert ckpt_steps(workdir) == ckpt_steps(reference.workdir) == [10, 20]
  assert_same_leaves(leaves(restore(workdir, 20)), reference.leaves)
  assert_same_leaves(leaves(restore(reference.workdir, 20)), reference.leaves)
  # Logged metrics of the two halves are those of the uninterrupted run.
  assert metric_rows(workdir) == metric_rows(reference.workdir)
  assert [r["step"] for r in metric_rows(workdir)] == [5, 10, 15, 20]


@pytest.mark.parametrize("module", [tiny], ids=["single"])
def test_kill_9_and_rerun_matches_uninterrupted_run(tmp_path, capsys, module):
  """configs/tiny.py killed mid-run (configs/tiny_msd.py's stacked students resume in-process: the next test)."""
  killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  overrides = {"train.num_steps": 200, "train.ckpt_every": 25, "train.log_every": 25}
  cmd = [DISTILL, "train", "--config", f"configs/{module.__name__.split('.')[-1]}.py", "--workdir", killed,
         *(f"--config.{k}={v}" for k, v in overrides.items())]
  env = dict(os.environ, DISTILL_COMPILATION_CACHE=os.path.expanduser("~/.cache/distill/jax-tests"))
  with open(tmp_path / "killed.log", "w") as log:
    victim = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.time() + 300
  while victim.poll() is None and time.time() < deadline and not any(s >= 50 for s in ckpt_steps(killed)):
    time.sleep(0.02)
  assert victim.poll() is None, "the run ended before it could be killed:\n" + (tmp_path / "killed.log").read_text()
  os.kill(victim.pid, signal.SIGKILL)
  assert victim.wait(60) == -signal.SIGKILL
  at_kill = ckpt_steps(killed)
  assert at_kill and 50 <= max(at_kill) < 200, at_kill

  # The uninterrupted run of the same config in another workdir, then the killed one rerun to completion (in-process:
  # the command is a thin wrapper around run.train with this config; same 8 devices, same compiled step).
  uninterrupted = leaves(run.train(tiny_config(module, **overrides), clean))
  capsys.readouterr()
  resumed = leaves(run.train(tiny_config(module, **overrides), killed))
  assert f"resuming from checkpoint step {max(at_kill)} " in capsys.readouterr().out

  assert max(ckpt_steps(killed)) == max(ckpt_steps(clean)) == 200
  assert_same_leaves(resumed, uninterrupted)
  assert_same_leaves(leaves(restore(killed, 200)), uninterrupted)
  assert metric_rows(killed)[-1] == metric_rows(clean)[-1]
  assert not any("tmp" in n for n in os.listdir(os.path.join(killed, checkpointing.CHECKPOINT_DIR)))


def test_multi_student_interrupted_and_resumed_run_is_bit_identical(tmp_path, capsys):
  """configs/tiny_msd.py's four stacked students (parameters, per-student optimizer states) stopped at step 10 and
  resumed to 20 equal an uninterrupted 20-step run, in memory, on disk and in the logged metrics."""
  stopped, clean = str(tmp_path / "stopped"), str(tmp_path / "clean")
  run.train(tiny_config(tiny_msd, **{"train.num_steps": 10}), stopped)
  capsys.readouterr()
  resumed = leaves(run.train(tiny_config(tiny_msd), stopped))
  assert "resuming from checkpoint step 10 " in capsys.readouterr().out
  uninterrupted = leaves(run.train(tiny_config(tiny_msd), clean))
  assert uninterrupted[".params['model']['out']['kernel'].value"].shape[0] == 4  # the students are stacked

  assert ckpt_steps(stopped) == ckpt_steps(clean) == [10, 20]
  assert_same_leaves(resumed, uninterrupted)
  assert_same_leaves(leaves(restore(stopped, 20)), uninterrupted)
  assert metric_rows(stopped) == metric_rows(clean)
  assert not any("tmp" in n for n in os.listdir(os.path.join(stopped, checkpointing.CHECKPOINT_DIR)))


def test_resume_onto_a_different_mesh(tmp_path, reference, monkeypatch):
  workdir = str(tmp_path / "mesh")
  run.train(tiny_config(**{"train.num_steps": 10, "mesh.data": 8, "mesh.fsdp": 1}), workdir)

  seen = {}
  original_restore = checkpointing.Checkpoints.restore

  def spy(self, step, abstract_state):
    restored = original_restore(self, step, abstract_state)
    seen["step"] = step
    seen["restored"] = {jax.tree_util.keystr(p): (x.shape, x.sharding)
                        for p, x in jax.tree_util.tree_flatten_with_path(restored)[0]}
    seen["abstract"] = {jax.tree_util.keystr(p): (a.shape, a.sharding)
                        for p, a in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
    return restored

  monkeypatch.setattr(checkpointing.Checkpoints, "restore", spy)
  state = run.train(tiny_config(**{"mesh.data": 4, "mesh.fsdp": 2}), workdir)  # mesh.* is resumable
  assert seen["step"] == 10
  assert seen["restored"].keys() == seen["abstract"].keys()
  kernels = 0
  for name, (shape, sharding) in seen["restored"].items():
    assert dict(sharding.mesh.shape) == {"student": 1, "data": 4, "fsdp": 2}, name
    assert sharding == seen["abstract"][name][1], name
    if name.startswith(".params") and name.endswith("['kernel'].value"):
      # Dense kernels are ('embed', 'mlp') -> ('fsdp', None): rows split over the 2 fsdp devices.
      assert sharding.shard_shape(shape) == (shape[0] // 2, shape[1]), name
      kernels += 1
    if name.endswith("['bias'].value"):
      assert sharding.shard_shape(shape) == shape, name
  assert kernels == 10  # embed fc1/fc2, inp, 2 x (hidden, emb_proj, hidden_out), out

  assert int(state.step) == 20
  final = leaves(state)
  out_kernel = state.params["model"]["out"]["kernel"][...]
  assert dict(out_kernel.sharding.mesh.shape) == {"student": 1, "data": 4, "fsdp": 2}
  assert out_kernel.sharding.shard_shape(out_kernel.shape) == (16, 2)
  assert final.keys() == reference.leaves.keys()
  for k in final:  # reductions run in another order on the other mesh: close, not bit-equal
    np.testing.assert_allclose(final[k], reference.leaves[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_changed_config_is_refused_and_overwrite_starts_fresh(tmp_path, reference):
  workdir = str(tmp_path / "w")
  shutil.copytree(reference.workdir, workdir)
  config_before = open(os.path.join(workdir, "config.json")).read()
  with pytest.raises(UserError) as e:
    run.train(tiny_config(**{"optim.learning_rate": 2e-3}), workdir)
  message = str(e.value)
  assert "optim.learning_rate" in message and "0.001" in message and "0.002" in message and "overwrite" in message
  assert "train." not in message  # only the differing, non-resumable key is named
  assert open(os.path.join(workdir, "config.json")).read() == config_before
  assert ckpt_steps(workdir) == [10, 20]

  changed = tiny_config(**{"optim.learning_rate": 2e-3, "train.num_steps": 10})
  state = run.train(changed, workdir, overwrite=True)
  assert int(state.step) == 10
  assert ckpt_steps(workdir) == [10]
  assert checkpointing.read_config(workdir) == json.loads(json.dumps(changed.to_dict()))
  fresh = run.train(changed, str(tmp_path / "fresh"))
  assert_same_leaves(leaves(state), leaves(fresh))


def test_a_pipeline_may_grow_at_the_end_but_not_change():
  from configs import tiny_reflow

  saved = tiny_reflow.get_config()
  grown = tiny_reflow.get_config()
  grown.stages.extra = tiny_reflow.get_config().stages.distill
  grown.pipeline.stages = (*saved.pipeline.stages, "extra")
  assert checkpointing.config_differences(saved.to_dict(), grown.to_dict()) == []
  grown.stages.reflow.config.optim.learning_rate *= 2  # a change to an existing stage is still one
  assert checkpointing.config_differences(saved.to_dict(), grown.to_dict()) == [
      "stages.reflow.config.optim.learning_rate"]
  shrunk = tiny_reflow.get_config()
  shrunk.pipeline.stages = saved.pipeline.stages[:-1]
  assert checkpointing.config_differences(saved.to_dict(), shrunk.to_dict()) == ["pipeline.stages"]


def test_keep_last_n_plus_every_k(tmp_path):
  workdir = str(tmp_path / "keep")
  ckpt_every, keep_last, keep_every = 2, 2, 6

  def expected(num_steps):
    saved = sorted(set(range(ckpt_every, num_steps + 1, ckpt_every)) | {num_steps})
    return sorted(set(saved[-keep_last:]) | {s for s in saved if s % keep_every == 0})

  overrides = {"train.ckpt_every": ckpt_every, "train.keep_last": keep_last, "train.keep_every": keep_every}
  run.train(tiny_config(**overrides), workdir)
  assert expected(20) == [6, 12, 18, 20]
  assert ckpt_steps(workdir) == expected(20)
  # The policy also applies across a resume (4 more steps: 22 and 24 saved, 20 dropped).
  state = run.train(tiny_config(**overrides, **{"train.num_steps": 24}), workdir)
  assert ckpt_steps(workdir) == expected(24) == [6, 12, 18, 22, 24]
  ckpts = checkpointing.Checkpoints(workdir, keep_last, keep_every)
  try:
    assert ckpts.all_steps() == expected(24) and ckpts.latest_step() == 24
  finally:
    ckpts.close()
  oldest, latest = restore(workdir, 6, 24)
  assert int(oldest.step) == 6
  assert_same_leaves(leaves(latest), leaves(state))


def _shape_tuple(text: str) -> tuple:
  return tuple(int(v) for v in text.split(",") if v.strip())


def test_restore_with_a_different_model_names_the_parameter_and_shapes(reference):
  wide = run.build_run(tiny_config(**{"model.width": 48})).trainer.abstract_sharded_state()
  narrow = run.build_run(tiny_config()).trainer.abstract_sharded_state()
  ckpts = checkpointing.Checkpoints(reference.workdir)
  try:
    with pytest.raises(UserError) as e:
      ckpts.restore(20, wide)
    message = str(e.value)
    m = re.fullmatch(r"checkpoint parameter (\S+) has shape \(([\d, ]*)\), the model expects \(([\d, ]*)\)", message)
    assert m, message
    name, saved, expected = m.group(1), _shape_tuple(m.group(2)), _shape_tuple(m.group(3))
    shapes = lambda tree: {checkpointing.path_name(p): tuple(a.shape)
                           for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]}
    assert shapes(narrow)[name] == saved and shapes(wide)[name] == expected and saved != expected
    assert 48 in expected and 32 in saved

    # A different objective (two groups 'a' and 'b' instead of 'model'): the missing entry is named.
    other = run.build_run(tiny_config(tiny_two_network)).trainer.abstract_sharded_state()
    with pytest.raises(UserError, match=r"has no entry params/a/"):
      ckpts.restore(20, other)
  finally:
    ckpts.close()


def test_non_finite_loss_stops_with_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "nan")
  config = tiny_config(**{"optim.learning_rate": 1e30, "train.ckpt_every": 1, "train.log_every": 1})
  with pytest.raises(NonFiniteLossError) as e:
    run.train(config, workdir)
  message = str(e.value)
  m = re.search(r"non-finite loss or gradient at step (\d+)\b", message)
  assert m, message
  bad = int(m.group(1))
  assert 0 < bad < config.train.num_steps
  assert f"last good checkpoint: step {bad} " in message
  # Every step before `bad` was logged with a finite loss; nothing after it was logged or saved.
  rows = reporting.read_metrics(workdir)
  assert [r["step"] for r in rows] == list(range(1, bad + 1))
  assert all(np.isfinite(r["model/loss"]) and np.isfinite(r["model/grad_norm"]) for r in rows)
  assert max(ckpt_steps(workdir)) == bad

  built = run.build_run(config)
  loss_fn = built.objective.loss

  def loss_and_grad_finite(state, step):
    """Recompute the trainer's loss and gradient for `step` from a restored state (ground truth)."""
    batch = jax.tree.map(np.asarray, built.source.global_batch(step, config.data.batch_size))
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), step), 0)
    fn = lambda p: loss_fn("model", {"model": p}, state.aux, None, batch, rng, state.step)[0]
    loss, grads = jax.jit(jax.value_and_grad(fn))(state.params["model"])
    return bool(np.isfinite(loss)) and all(bool(np.all(np.isfinite(g))) for g in jax.tree.leaves(grads))

  previous, last_good = restore(workdir, bad - 1, bad)
  assert int(last_good.step) == bad and int(last_good.first_bad_step) == -1
  assert all(np.all(np.isfinite(v)) for v in leaves(last_good).values())  # params, EMA and optimizer state
  assert not loss_and_grad_finite(last_good, bad)  # the step that was refused really is non-finite
  assert loss_and_grad_finite(previous, bad - 1)

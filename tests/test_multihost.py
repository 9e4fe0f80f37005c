"""Multi-host training with JAX's distributed runtime on CPU: 2 local processes x 4 CPU devices (gloo collectives),
started by `distill train`'s multi-host flags, against the same run as 1 process x 8 devices."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import json
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from configs import tiny
from distill import checkpointing, data as data_lib, reporting, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multihost_worker.py")
TEST_CACHE = os.path.expanduser("~/.cache/distill/jax-tests")
STEPS, CKPT_EVERY, PROCESSES, LOCAL_DEVICES = 6, 3, 2, 4


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_processes(cmds, logs, env, timeout=400):
  """Start one process per command, wait for all; a hang or failure kills the rest and fails with their logs."""
  procs = []
  for cmd, log in zip(cmds, logs):
    with open(log, "w") as f:
      procs.append(subprocess.Popen([str(c) for c in cmd], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT))
  try:
    codes = [p.wait(timeout) for p in procs]
  except subprocess.TimeoutExpired:
    codes = None
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  text = "\n".join(f"--- process {i} ---\n" + open(log).read()[-4000:] for i, log in enumerate(logs))
  assert codes == [0] * len(cmds), text
  return [open(log).read() for log in logs]


def config():
  c = tiny.get_config()
  c.train.num_steps, c.train.ckpt_every = STEPS, CKPT_EVERY
  c.mesh.update(data=-1, fsdp=1)
  return c


def param_leaves(params) -> dict:
  return {"param" + jax.tree_util.keystr(p): np.array(jax.device_get(x))
          for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}


def restore_params(workdir, step) -> dict:
  built = run.build_run(ml_collections.ConfigDict(checkpointing.read_config(str(workdir))))
  ckpts = checkpointing.Checkpoints(str(workdir))
  try:
    return param_leaves(ckpts.restore(step, built.trainer.abstract_sharded_state()).params)
  finally:
    ckpts.close()


def assert_close(a: dict, b: dict):
  assert a.keys() == b.keys()
  for k in a:  # the cross-process all-reduce sums in another order: close, not bit-equal
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
  """The reference: the same run in this process on its 8 CPU devices, and the initial parameters."""
  assert jax.process_count() == 1 and jax.device_count() == 8
  workdir = tmp_path_factory.mktemp("single")
  c = config()
  init = param_leaves(run.build_run(c).trainer.init_state().params)
  return param_leaves(run.train(c, str(workdir)).params), init


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  """`distill train --config configs/tiny.py --coordinator --num_processes --process_id` as 2 processes x 4 devices
  into one shared workdir, each run through tests/multihost_worker.py (which records the rows each process loads and
  gathers the final parameters): (workdir, [npz per process], [log per process])."""
  root = tmp_path_factory.mktemp("multi")
  workdir, port = root / "run", free_port()
  env = dict({k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, DISTILL_COMPILATION_CACHE=TEST_CACHE)
  cmds = [[sys.executable, WORKER, "--local_devices", LOCAL_DEVICES, "--out", root / f"out{i}.npz",
           "train", "--config", "configs/tiny.py", "--workdir", workdir, f"--config.train.num_steps={STEPS}",
           f"--config.train.ckpt_every={CKPT_EVERY}", "--coordinator", f"localhost:{port}", "--num_processes",
           PROCESSES, "--process_id", i] for i in range(PROCESSES)]
  logs = run_processes(cmds, [root / f"log{i}.txt" for i in range(PROCESSES)], env)
  outs = []
  for i in range(PROCESSES):
    with np.load(root / f"out{i}.npz") as f:
      outs.append({k: f[k] for k in f.files})
  return workdir, outs, logs


def test_two_processes_match_one_process(two_processes, single_process):
  workdir, outs, _ = two_processes
  reference, init = single_process
  infos = [json.loads(str(o["info"])) for o in outs]
  for i, info in enumerate(infos):
    assert info["process_index"] == i and info["process_count"] == PROCESSES
    assert info["device_count"] == PROCESSES * LOCAL_DEVICES and info["local_device_count"] == LOCAL_DEVICES
    assert info["step"] == STEPS
  params = [{k: v for k, v in o.items() if k.startswith("param")} for o in outs]
  # Every process holds the same (replicated) parameters, close to the single-process run, far from the start.
  for k in params[0]:
    np.testing.assert_array_equal(params[0][k], params[1][k], err_msg=k)
  assert_close(params[0], reference)
  moved = max(np.abs(params[0][k] - init[k]).max() for k in init)
  assert moved > 1e-3


def test_each_process_loads_only_its_rows(two_processes):
  _, outs, _ = two_processes
  batch = 64
  for i, o in enumerate(outs):
    calls = json.loads(str(o["info"]))["calls"]
    assert [c["step"] for c in calls] == list(range(STEPS))
    assert all(c["batch_size"] == batch and c["process_index"] == i and c["process_count"] == PROCESSES
               and c["rows"] == batch // PROCESSES for c in calls)
  source = data_lib.make_source(config().data.source, config().seed)
  np.testing.assert_array_equal(np.concatenate([o["batch0"] for o in outs]), source.global_batch(0, batch)["x"])


def test_shared_workdir_written_once_and_restorable_on_one_process(two_processes):
  workdir, outs, logs = two_processes
  assert sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()) == [CKPT_EVERY, STEPS]
  assert not [n for n in os.listdir(workdir / "checkpoints") if not n.isdigit()]
  # Only process 0 writes metrics (each logged step once) and prints progress.
  assert [r["step"] for r in reporting.read_metrics(str(workdir))] == [5, 6]
  assert len([n for n in os.listdir(workdir) if n.startswith("events.out.tfevents")]) == 1
  assert "step 6/6" in logs[0] and "step 6/6" not in logs[1]
  assert checkpointing.read_config(str(workdir)) == json.loads(json.dumps(config().to_dict()))
  # The checkpoint written by two processes restores onto this process's 8 devices bit-exactly.
  params = {k: v for k, v in outs[0].items() if k.startswith("param")}
  restored = restore_params(workdir, STEPS)
  assert restored.keys() == params.keys()
  for k in params:
    np.testing.assert_array_equal(restored[k], params[k], err_msg=k)


def test_cli_multihost_flags(two_processes):
  """`distill train --coordinator --num_processes --process_id` (the command the two processes ran) joins one
  2 x 4 distributed run: every process sees all 8 devices, trains to the end and reports it."""
  _, outs, logs = two_processes
  assert all(f"trained to step {STEPS}" in log for log in logs)
  for i, o in enumerate(outs):
    info = json.loads(str(o["info"]))
    assert (info["process_index"], info["process_count"], info["device_count"]) == (i, PROCESSES, 8)

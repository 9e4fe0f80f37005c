"""Test set-up: 8 fake CPU devices and the persistent compilation cache, before JAX initialises."""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/distill/jax-tests"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

MNIST_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist10k.npz")


@pytest.fixture(scope="session")
def tiny_teacher_bundle(tmp_path_factory):
  """An exported 2-D flow-matching MLP (configs/tiny.py, 10 steps), shared by the teacher and reflow tests."""
  from configs import tiny
  from distill import api, run

  workdir = str(tmp_path_factory.mktemp("tiny_teacher"))
  config = tiny.get_config()
  config.train.num_steps = 10
  run.train(config, workdir)
  return api.export(workdir)

"""A frozen teacher loaded from an exported bundle: passed to the step as an argument, copied into a group on
request, and used as the regression target of the two-network objective."""

import jax
import numpy as np
import pytest

import samplers
from configs import tiny, tiny_two_network
from distill import run
from distill.errors import UserError
from distill.teacher import load_teacher


@pytest.fixture(scope="module")
def teacher_bundle(tiny_teacher_bundle):
  return tiny_teacher_bundle


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_group_initialised_from_teacher_and_trained_against_it(teacher_bundle, tmp_path):
  config = tiny_two_network.get_config()
  config.teacher.bundle = teacher_bundle
  config.objective.a_from_teacher = True
  built = run.build_run(config)
  state = built.trainer.init_state()
  teacher = samplers.load(teacher_bundle)
  for got, want in zip(_leaves(state.params["a"]), _leaves(teacher.params)):
    np.testing.assert_array_equal(got, want)

  # The loss of group 'a' is its distance to the teacher's velocity: zero while a == teacher.
  batch = built.source.global_batch(0, config.data.batch_size)
  from distill import sharding
  params = state.params
  loss, _ = built.objective.loss("a", params, state.aux, built.trainer.teacher_params(),
                                 sharding.global_batch(batch, built.mesh), jax.random.key(0), state.step)
  assert float(loss) == pytest.approx(0.0, abs=1e-10)

  new_state, metrics = built.trainer.step(state, built.trainer.teacher_params(),
                                          sharding.global_batch(batch, built.mesh))
  assert float(metrics["a/loss"]) == pytest.approx(0.0, abs=1e-10)
  assert float(metrics["b/updated"]) == 0.0  # b_every=2, offset 1: not at step 0


def test_teacher_config_errors(teacher_bundle, tmp_path):
  config = tiny_two_network.get_config()
  config.teacher.bundle = str(tmp_path / "missing")
  with pytest.raises(UserError, match="not a sampler bundle"):
    load_teacher(config.teacher)
  config.teacher.workdir = str(tmp_path)
  with pytest.raises(UserError, match="only one"):
    load_teacher(config.teacher)
  config.teacher.bundle = ""
  with pytest.raises(UserError, match="no export"):
    load_teacher(config.teacher)


def test_teacher_cast_to_bfloat16_runs_in_bfloat16(teacher_bundle):
  config = _with_bundle(teacher_bundle)
  config.dtype = "bfloat16"
  teacher = load_teacher(config)
  assert {x.dtype for x in jax.tree.leaves(teacher.params)} == {np.dtype(jax.numpy.bfloat16)}
  assert teacher.network.compute_dtype == "bfloat16"
  plain = load_teacher(_with_bundle(teacher_bundle))
  assert plain.network.compute_dtype == "float32" and plain.network.same_architecture(teacher.network)
  x = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
  sigma = np.full((16,), 0.5, np.float32)
  fast, exact = teacher.network.denoise(teacher.params, x, sigma), plain.network.denoise(plain.params, x, sigma)
  assert fast.dtype == np.float32 and np.max(np.abs(np.asarray(fast - exact))) < 0.05 * np.max(np.abs(exact))


def _with_bundle(bundle):
  config = tiny.get_config()
  config.teacher.bundle = bundle
  return config.teacher

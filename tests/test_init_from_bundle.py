"""Students and generators initialised from an exported bundle (objective.init / objective.generator_init = a path),
and a pipeline stage initialised from an earlier stage (stages.<s>.init_stage)."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

import samplers
from configs import common, tiny
from distill import api, objectives, run
from distill import sharding as sharding_lib
from distill.data import DataSpec
from distill.errors import UserError
from distill.teacher import load_teacher
from distill.trainer import Trainer

SPEC = DataSpec("points", (2,), 0, (-4.0, 4.0))


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory):
  """A tiny flow exported from a run with another seed than the shared tiny teacher (so its parameters differ)."""
  workdir = str(tmp_path_factory.mktemp("other"))
  config = tiny.get_config()
  config.seed, config.train.num_steps = 7, 5
  run.train(config, workdir)
  return api.export(workdir)


def _initial_params(config, teacher=None) -> dict:
  objective = objectives.build(config, SPEC, teacher)
  mesh = sharding_lib.make_mesh({"data": 8, "fsdp": 1})
  state = Trainer(objective, mesh, config.sharding.rules, config.ema, config.seed, teacher).init_state()
  return {name: nnx.to_pure_dict(p) for name, p in state.params.items()}


def _assert_same(params, bundle):
  expected = nnx.to_pure_dict(samplers.load(bundle).params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, expected)


def test_reflow_student_starts_from_the_bundle(other_bundle):
  config = tiny.get_config()
  config.objective = common.reflow_objective(init=other_bundle)
  params = _initial_params(config)["model"]
  _assert_same(params, other_bundle)


def test_score_distillation_generator_starts_from_the_bundle_and_the_fake_score_from_the_teacher(
    tiny_teacher_bundle, other_bundle):
  config = tiny.get_config()
  config.objective = common.score_distillation_objective("sid", generator_init=other_bundle)
  config.teacher.bundle = tiny_teacher_bundle
  params = _initial_params(config, load_teacher(config.teacher))
  _assert_same(params["generator"], other_bundle)
  _assert_same(params["fake"], tiny_teacher_bundle)


def test_a_bundle_of_another_architecture_or_no_bundle_is_one_clear_line(other_bundle, tmp_path):
  config = tiny.get_config()
  config.model.width *= 2
  config.objective = common.reflow_objective(init=other_bundle)
  with pytest.raises(UserError, match=r"objective.init: the bundle .* does not match the configured architecture "
                                      r"\(bundle -> config: model.width"):
    objectives.build(config, SPEC, None)
  config.objective.init = str(tmp_path / "missing")
  with pytest.raises(UserError, match="objective.init must be 'teacher', 'random' or the directory of an exported"):
    objectives.build(config, SPEC, None)


def test_pipeline_stage_starts_from_an_earlier_stage(tmp_path):
  """A stage initialised from the previous stage, one step at learning rate 0 with EMA decay 0, exports exactly that
  stage's model."""
  from distill import pipeline

  first = tiny.get_config()
  first.train.num_steps = 3
  second = tiny.get_config()
  second.objective = common.reflow_objective(init="random")
  second.train.num_steps, second.optim.learning_rate, second.ema.decay = 1, 0.0, 0.0
  config = common.pipeline({"first": common.train_stage(first),
                            "pairs": common.pairs_stage("first", num=64, seed=0, shard_size=64),
                            "second": common.train_stage(second, data_stage="pairs", init_stage="first")},
                           "toy:moons")
  workdir = str(tmp_path / "p")
  records = pipeline.run_pipeline(config, workdir, log=lambda s: None)
  assert records["second"]["checksum"] == records["first"]["checksum"]


def test_score_distillation_pipeline_starts_the_generator_from_the_init_stage(tmp_path):
  """teacher -> sid -> distill (init=('sid', ...)): the distill stage's generator, one step at learning rate 0 with EMA
  decay 0, exports exactly the SiD stage's generator, which training moved away from the teacher."""
  from distill import pipeline

  teacher = tiny.get_config()
  teacher.train.num_steps = 3
  sid = common.score_distillation_stage(tiny.get_config(), "sid", 2, 1e-2)
  second = common.score_distillation_stage(tiny.get_config(), "uni_instruct", 1, 0.0)
  second.ema.decay = 0.0
  config = common.score_distillation_pipeline(teacher, second, "toy:moons", init=("sid", sid))
  config.mesh.data = 1  # one device: the three stages' steps compile faster than for 8 fake CPU devices
  assert list(config.pipeline.stages) == ["teacher", "sid", "distill"]
  records = pipeline.run_pipeline(config, str(tmp_path / "p"), log=lambda s: None)
  assert records["distill"]["checksum"] == records["sid"]["checksum"] != records["teacher"]["checksum"]
  with open(tmp_path / "p" / "distill" / "config.json") as f:
    assert json.load(f)["objective"]["generator_init"] == records["sid"]["bundle"]

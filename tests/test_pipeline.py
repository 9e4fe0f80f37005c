"""Pipeline stage configs: seeds (the pipeline's unless a stage sets its own), data sources and teacher bundles."""

import pytest

from configs import toy2d_sid
from distill import pipeline, pipeline_config, run
from distill.errors import UserError


def _resolved(config, name):
  pipeline_config.resolve_seeds(config)
  return pipeline.stage_training_config(config, config.stages[name], "/w", {"teacher": "/w/teacher/export"})


def test_stages_inherit_the_pipeline_seed():
  config = toy2d_sid.get_config()
  config.seed = 3
  assert _resolved(config, "teacher").seed == 3
  assert _resolved(config, "distill").seed == 3


def test_a_stage_seed_override_is_honoured_and_only_for_that_stage():
  config = toy2d_sid.get_config()
  config.seed = 3
  config.stages.distill.config.seed = 5
  assert _resolved(config, "distill").seed == 5
  assert _resolved(config, "teacher").seed == 3


def test_stage_config_takes_the_pipeline_data_mesh_and_teacher_bundle():
  config = toy2d_sid.get_config()
  config.data.source = "npz:/d/points.npz"
  config.mesh.data = 2
  distill = _resolved(config, "distill")
  assert distill.data.source == "npz:/d/points.npz" and distill.eval.reference == "npz:/d/points.npz"
  assert distill.mesh.data == 2
  assert distill.teacher.bundle == "/w/teacher/export" and distill.teacher.workdir == ""


def test_a_negative_stage_seed_other_than_inherit_is_rejected():
  config = toy2d_sid.get_config()
  config.stages.distill.config.seed = -2
  with pytest.raises(UserError, match="seed must be >= 0"):
    _resolved(config, "distill")


def test_training_a_stage_config_alone_with_the_inherit_seed_is_rejected():
  stage = toy2d_sid.get_config().stages.distill.config
  with pytest.raises(UserError, match="seed must be >= 0"):
    run.build_run(stage)



def test_resolved_seeds_are_what_a_workdir_records(tmp_path):
  """Workdirs record concrete stage seeds, as before stages could inherit one, so older pipeline workdirs resume."""
  from distill import checkpointing

  config = toy2d_sid.get_config()
  config.seed = 4
  config.stages.teacher.config.seed = 9
  pipeline_config.resolve_seeds(config)
  assert config.stages.distill.config.seed == 4 and config.stages.teacher.config.seed == 9

  older = toy2d_sid.get_config()  # what a workdir written before INHERIT_SEED recorded: the pipeline seed everywhere
  for name in ("teacher", "distill"):
    older.stages[name].config.seed = older.seed
  checkpointing.prepare_workdir(str(tmp_path), older.to_dict(), overwrite=False)
  current = toy2d_sid.get_config()
  with pytest.raises(UserError, match="seed"):
    checkpointing.prepare_workdir(str(tmp_path), current.to_dict(), overwrite=False)
  pipeline_config.resolve_seeds(current)
  checkpointing.prepare_workdir(str(tmp_path), current.to_dict(), overwrite=False)

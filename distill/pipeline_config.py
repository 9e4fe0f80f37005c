"""Pipeline configs without running them: which stage a pipeline produces, stage seeds, validation.

Configs import INHERIT_SEED from here (configs import only config helpers); distill/pipeline.py runs the stages.
"""

from __future__ import annotations

from distill.errors import UserError

INHERIT_SEED = -1  # a stage config seed that means "the pipeline's seed"


def is_pipeline(config) -> bool:
  return "pipeline" in config


def final_stage(config) -> str:
  """The last train stage (the model a pipeline produces)."""
  train = [s for s in config.pipeline.stages if config.stages[s].kind == "train"]
  if not train:
    raise UserError("a pipeline needs at least one train stage")
  return train[-1]


def resolve_seeds(config) -> None:
  """Give every train stage left at INHERIT_SEED the pipeline's seed (in place), so that the config a workdir
  records names each stage's actual seed; any other negative stage seed is an error."""
  for name in config.pipeline.stages:
    stage = config.stages.get(name)
    if stage is None or stage.kind != "train":
      continue
    if stage.config.seed == INHERIT_SEED:
      stage.config.seed = config.seed
    elif stage.config.seed < 0:
      raise UserError(f"stages.{name}.config.seed must be >= 0, or {INHERIT_SEED} for the pipeline's seed; "
                      f"got {stage.config.seed}")


def validate(config) -> None:
  """Every listed stage has a section of a known kind and a valid export choice."""
  for name in config.pipeline.stages:
    if name not in config.stages:
      raise UserError(f"pipeline stage {name!r} has no stages.{name} section")
    if config.stages[name].kind not in ("train", "pairs"):
      raise UserError(f"stages.{name}.kind must be 'train' or 'pairs', got {config.stages[name].kind!r}")
    export = config.stages[name].get("export", "last")
    if export not in ("last", "best"):
      raise UserError(f"stages.{name}.export must be 'last' or 'best', got {export!r}")
    if export == "best" and not config.stages[name].config.eval.fid_every:
      raise UserError(f"stages.{name}.export='best' needs in-training evaluation: set its eval.fid_every")

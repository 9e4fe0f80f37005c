"""Branch a run: a new workdir that starts from another run's checkpoint, so variants sharing a prefix train it once
(Uni-Instruct's SiD warm-up before objective.divergence_start is the same for every divergence).

  api.train(trunk_config, "runs/trunk")              # e.g. train.num_steps = divergence_start
  api.branch(config, source="runs/trunk", workdir="runs/fkl", step=1000)
  api.train(config, "runs/fkl")                       # resumes at step 1000 under `config`

The branch holds the source's checkpoint at `step` and its best checkpoint (which must be at or before `step`: the
source stopped there), so `config` continues exactly as it would have trained from scratch, provided it trains
like the source's config up to `step` (the caller's claim; tests/test_branching.py proves it for the divergence).
For a pipeline the branched stage is the last train stage: the stages before it are copied whole (their records
too) and their configs must equal the source's; the branch's config may differ from the source's only inside the
branched stage (and top-level aliases of it, like a score-distillation pipeline's `objective`). The branch is
assembled beside `workdir` and renamed into place, and `workdir/branch.json` records where it came from.
"""

from __future__ import annotations

import json
import os
import shutil

import ml_collections

from distill import checkpointing, pipeline
from distill.errors import UserError
from distill.pipeline_config import final_stage, is_pipeline, resolve_seeds

BRANCH_FILE = "branch.json"


def branch(config, source: str, workdir: str, step: int) -> None:
  """Make `workdir` (new or empty) a run of `config` that resumes from `source`'s checkpoint at `step`."""
  saved = checkpointing.read_config(source)
  if os.path.exists(workdir) and os.listdir(workdir):
    raise UserError(f"branch target {workdir} is not empty: branch into a new workdir")
  tmp = f"{workdir.rstrip(os.sep)}.branch-tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    if is_pipeline(config):
      stage = _branch_pipeline_stages(config, saved, source, tmp, workdir)
      _branch_training(os.path.join(source, stage), os.path.join(tmp, stage), step)
    else:
      stage = ""
      _branch_training(source, tmp, step)
    with open(os.path.join(tmp, BRANCH_FILE), "w") as f:
      json.dump({"source": os.path.abspath(source), "stage": stage, "step": int(step)}, f, indent=2)
    if os.path.exists(workdir):
      os.rmdir(workdir)
    os.replace(tmp, workdir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _branch_training(source: str, target: str, step: int) -> None:
  """Copy a training workdir's checkpoint at `step` and its best checkpoint (at or before `step`) to `target`."""
  ckpt_dir = os.path.join(source, checkpointing.CHECKPOINT_DIR)
  steps = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit()) if os.path.isdir(ckpt_dir) else []
  if step not in steps:
    raise UserError(f"{source} has no checkpoint at step {step} (it has: {', '.join(map(str, steps)) or 'none'})")
  shutil.copytree(os.path.join(ckpt_dir, str(step)), os.path.join(target, checkpointing.CHECKPOINT_DIR, str(step)))
  best_file = os.path.join(source, checkpointing.BEST_FILE)
  if os.path.exists(best_file):
    with open(best_file) as f:
      best_step = json.load(f)["step"]
    if best_step > step:
      raise UserError(f"{source}'s best checkpoint is at step {best_step}, past the branch point {step}: branch from "
                      f"a run that stopped at step {step} (train.num_steps={step}), whose best is the branch's")
    shutil.copy2(best_file, os.path.join(target, checkpointing.BEST_FILE))
    shutil.copytree(os.path.join(source, checkpointing.BEST_DIR), os.path.join(target, checkpointing.BEST_DIR))


def _branch_pipeline_stages(config, saved: dict, source: str, target: str, workdir: str) -> str:
  """Copy the finished stages before the last train stage to `target` (directories, and records whose paths are
  moved to `workdir`, where `target` will be renamed) after checking that `config` differs from the source's only
  inside that stage; returns its name."""
  stage = final_stage(config)
  inside = f"stages.{stage}.config."
  current = ml_collections.ConfigDict(config.to_dict())
  resolve_seeds(current)  # as the source's saved config has them
  differences = checkpointing.config_differences(saved, current.to_dict())
  outside = [k for k in differences if not k.startswith(inside) and inside + k not in differences]
  if outside:
    raise UserError(f"cannot branch {source} into a config that differs before stage {stage!r}: "
                    f"{', '.join(outside[:5])}")
  records = pipeline.load_records(source)
  earlier = config.pipeline.stages[:list(config.pipeline.stages).index(stage)]
  missing = [name for name in earlier if name not in records]
  if missing:
    raise UserError(f"{source} has not finished stage(s) {', '.join(missing)}: nothing to branch from")
  os.makedirs(target)
  moved = {}
  for name in earlier:
    if os.path.isdir(os.path.join(source, name)):
      shutil.copytree(os.path.join(source, name), os.path.join(target, name))
    moved[name] = {k: _moved_path(v, source, workdir) for k, v in records[name].items()}
  pipeline.save_records(target, moved)
  return stage


def _moved_path(value, source: str, target: str):
  """`value` with a leading `source` path replaced by `target` (other values unchanged)."""
  if isinstance(value, str) and (value == source or value.startswith(source.rstrip(os.sep) + os.sep)):
    return target + value[len(source.rstrip(os.sep)):]
  return value

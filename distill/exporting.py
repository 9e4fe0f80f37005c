"""Export a training workdir's checkpoint (latest, a given step, or the best by in-training evaluation) as a
self-contained sampler bundle (samplers/export.py); a pipeline workdir exports its final train stage."""

from __future__ import annotations

import json
import os

import ml_collections

from distill import checkpointing, run
from distill.errors import UserError
from distill.pipeline_config import final_stage, is_pipeline
from samplers.export import export_bundle


def _best_metric(workdir: str) -> str:
  with open(os.path.join(workdir, checkpointing.BEST_FILE)) as f:
    return json.load(f).get("metric", "fid")


def export_workdir(workdir: str, out: str | None = None, step: int | None = None, best: bool = False,
                   log=print) -> str:
  """Write the EMA parameters of `workdir`'s checkpoint (the latest, `step`, or with `best` the best by in-training
  FID / energy) as a bundle in `out` (default WORKDIR/export); returns the bundle path."""
  config = ml_collections.ConfigDict(checkpointing.read_config(workdir))
  if is_pipeline(config):  # a pipeline exports the model of its last train stage, as that stage chose
    stage = final_stage(config)
    best = best or (step is None and config.stages[stage].get("export", "last") == "best")
    return export_workdir(os.path.join(workdir, stage), out or os.path.join(workdir, "export"), step, best, log)
  built = run.build_run(config)
  if best and not os.path.exists(os.path.join(workdir, checkpointing.BEST_FILE)):
    raise UserError(f"{workdir} has no best checkpoint (in-training evaluation was off: set eval.fid_every)")
  ckpts = (checkpointing.Checkpoints(workdir, 1, subdir=checkpointing.BEST_DIR) if best else
           checkpointing.Checkpoints(workdir, config.train.keep_last, config.train.keep_every))
  try:
    step = ckpts.latest_step() if step is None else step
    if step is None or step not in ckpts.all_steps():
      raise UserError(f"{workdir} has no checkpoint{'' if step is None else f' at step {step}'}")
    state = ckpts.restore(step, built.trainer.abstract_sharded_state())
  finally:
    ckpts.close()
  group = built.objective.sample_group
  out = out or os.path.join(workdir, "export")
  bundle_section = getattr(built.objective, "bundle_section", None)  # restoration models (OFTSR)
  meta = export_bundle(
      out, built.objective.groups[group].network, state.ema[group], sampler_config=run.sampler_config(config),
      data_spec=built.source.spec,
      provenance={"workdir": os.path.abspath(workdir), "step": int(step), "objective": config.objective.name,
                  "data_source": config.data.source, "group": group,
                  "best_by": _best_metric(workdir) if best else ""},
      restoration=bundle_section() if bundle_section else None)
  log(f"exported step {step} ({meta['nfe']} NFE at {meta['default_steps']} steps) to {out}")
  return out

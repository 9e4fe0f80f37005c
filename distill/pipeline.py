"""Multi-stage runs in one command: teacher -> pairs -> reflow -> pairs -> one-step distillation, and the like.

A pipeline config (configs/toy2d_reflow.py) has `pipeline.stages` (stage names in order) and `stages.<name>`:
  kind 'train': `config` is a complete training config; `data_stage` names a pairs stage whose store becomes its
                data source (otherwise the pipeline's data.source is used); `teacher_stage` names an earlier
                train stage whose exported EMA model becomes its teacher; `init_stage` names an earlier train
                stage whose exported EMA model initialises its student (objective.init; a score-distillation
                objective's generator, objective.generator_init); `export` 'last' (the
                final step) or 'best' (the checkpoint with the best in-training FID / energy, eval.fid_every > 0)
                chooses the checkpoint exported as the stage's model.
  kind 'pairs': `source_stage` names the train stage whose exported EMA model makes the pairs; `num`, `seed`,
                `shard_size`, and `steps` / `sampler` (empty: the model's own sampler) set the solver.
A train stage's config.seed is its own when >= 0; pipeline configs leave it at -1 (INHERIT_SEED), the pipeline's
top-level seed, so `--config.seed=N` reseeds every stage and `--config.stages.<name>.config.seed=N` only that one.
Stage s runs in WORKDIR/s (its own config, checkpoints, resume); a train stage is exported to WORKDIR/s/export.
A stage named 'teacher' is skipped when the pipeline's teacher.workdir / teacher.bundle is set (that model is used).
WORKDIR/pipeline.json records every finished stage: bundle, parameter checksum, solver, NFE, seeds, seconds. Rerunning
the command skips finished stages and resumes an interrupted one; the last train stage is what `distill export
--workdir WORKDIR` exports.
"""

from __future__ import annotations

import json
import os
import time

import ml_collections

import samplers
from distill import checkpointing, pairs, run
from distill.errors import UserError
from distill.exporting import export_workdir
from distill.pipeline_config import resolve_seeds, validate
from distill.teacher import load_teacher

RECORD_FILE = "pipeline.json"


def load_records(workdir: str) -> dict:
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def save_records(workdir: str, records: dict) -> None:
  tmp = os.path.join(workdir, f".{RECORD_FILE}.tmp{os.getpid()}")
  with open(tmp, "w") as f:
    json.dump(records, f, indent=2)
  os.replace(tmp, os.path.join(workdir, RECORD_FILE))


def _bundle_checksum(bundle: str) -> str:
  return samplers.load(bundle).meta["checksum"]


def _external_teacher(config) -> str | None:
  """The bundle of a teacher given on the command line (teacher.workdir or teacher.bundle), if any."""
  workdir, bundle = config.teacher.get("workdir", ""), config.teacher.get("bundle", "")
  if workdir:
    bundle = os.path.join(workdir, "export")
    if not os.path.exists(bundle):
      export_workdir(workdir, bundle)
  return bundle or None


def stage_training_config(config, stage, workdir: str, bundles: dict):
  """The complete training config of train stage `stage`: its own config with the pipeline's mesh, data source
  (or its data stage's pairs), evaluation reference and the bundles of its teacher / init stages. Seeds are set by
  resolve_seeds first."""
  stage_config = stage.config
  stage_config.mesh = config.mesh
  stage_config.data.source = (f"pairs:{os.path.join(workdir, stage.data_stage)}" if stage.get("data_stage")
                              else config.data.source)
  stage_config.eval.reference = config.data.source
  if stage.get("teacher_stage"):
    stage_config.teacher.bundle, stage_config.teacher.workdir = bundles[stage.teacher_stage], ""
  if stage.get("init_stage"):
    key = "generator_init" if "generator_init" in stage_config.objective else "init"
    stage_config.objective[key] = bundles[stage.init_stage]
  return stage_config


def _train_stage(config, name: str, stage, workdir: str, bundles: dict) -> dict:
  stage_config = stage_training_config(config, stage, workdir, bundles)
  stage_dir = os.path.join(workdir, name)
  state = run.train(stage_config, stage_dir)
  bundle = export_workdir(stage_dir, os.path.join(stage_dir, "export"), best=stage.get("export") == "best")
  return {"kind": "train", "workdir": stage_dir, "bundle": bundle, "checksum": _bundle_checksum(bundle),
          "objective": stage_config.objective.name, "steps": int(state.step), "data": stage_config.data.source,
          "teacher": stage_config.teacher.bundle or None}


def _pairs_stage(name: str, stage, workdir: str, bundles: dict) -> dict:
  teacher = load_teacher(ml_collections.ConfigDict(dict(bundle=bundles[stage.source_stage], workdir="",
                                                        dtype="float32")))
  sampler = dict(stage.sampler) if stage.get("sampler") else None
  out = os.path.join(workdir, name)
  meta = pairs.generate_pairs(out, teacher, num=stage.num, seed=stage.seed, shard_size=stage.shard_size,
                              sampler_config=sampler, steps=stage.get("steps") or None)
  return {"kind": "pairs", "store": out, "teacher_checksum": meta["teacher"]["checksum"], "num": meta["num"],
          "seed": meta["seed"], "sampler": meta["sampler"], "steps": meta["steps"], "nfe": meta["nfe"]}


def run_pipeline(config, workdir: str, log=print, overwrite: bool = False) -> dict:
  """Run (or resume) every stage in order in `workdir` (prepared as checkpointing.prepare_workdir does: a workdir of
  another config is refused unless `overwrite`); returns the records of all stages."""
  validate(config)
  resolve_seeds(config)
  checkpointing.prepare_workdir(workdir, config.to_dict(), overwrite)
  records = load_records(workdir)
  bundles = {n: r["bundle"] for n, r in records.items() if "bundle" in r}
  external = _external_teacher(config)
  for index, name in enumerate(config.pipeline.stages):
    stage = config.stages[name]
    if name in records:
      log(f"[stage {index + 1}/{len(config.pipeline.stages)}] {name}: already done")
      continue
    if name == "teacher" and external:
      bundles[name] = external
      records[name] = {"kind": "external", "bundle": external, "checksum": _bundle_checksum(external)}
      log(f"[stage {index + 1}/{len(config.pipeline.stages)}] teacher: using {external}")
      save_records(workdir, records)
      continue
    log(f"[stage {index + 1}/{len(config.pipeline.stages)}] {name} ({stage.kind})")
    start = time.time()
    if stage.kind == "train":
      record = _train_stage(config, name, stage, workdir, bundles)
      bundles[name] = record["bundle"]
    else:
      record = _pairs_stage(name, stage, workdir, bundles)
    record["seconds"] = round(time.time() - start, 1)
    records[name] = record
    save_records(workdir, records)
  return records

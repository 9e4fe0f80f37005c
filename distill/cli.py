"""The `distill` command: train, export, sample, eval and quickstart.

  distill train --config configs/toy2d_teacher.py --workdir W [--config.a.b=value ...] [--overwrite]
  distill export --workdir W [--out B] [--step N | --best]
  distill sample --sampler B --num N --out S.npz [--steps K] [--seed S] [--labels 0,1,...]
  distill eval (--workdir W | --sampler B) [--data SOURCE] [--num N] [--steps 1,2,4] [--json OUT]
               [--solver euler|heun|dpm_solver_2m|rk45] [--features inception|classifier:C] [--ref R]
  distill pairs (--teacher B | --teacher_workdir T) --out P --num N [--solver rk45] [--steps K] [--seed S]
  distill boss --sampler B --steps K --out grid.json [--bundle_out B2]
  distill fid (--sampler B | --workdir W | --samples S.npz) [--features inception|classifier:C] [--ref R] [--num N]
  distill fid stats --data SOURCE --out stats.npz [--features F]   |   distill fid convert-weights --pth P --out W
  distill train-classifier --data npz:P.npz --out C   |   distill lpips-weights --vgg V.pth --lin L.pth --out W
  distill quickstart [--workdir runs/quickstart]

Flags are absl flags, config overrides are ml_collections `--config.key=value`. Problems with the input (unknown
config key, objective or dataset, missing file, checkpoint mismatch, non-finite loss) are printed as one line.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags

USAGE = __doc__


def parse_flags(argv, define):
  """Parse argv (without the subcommand) with a fresh absl FlagValues populated by `define(fv, full_argv)`."""
  full_argv = ["distill"] + list(argv)
  fv = flags.FlagValues()
  define(fv, full_argv)
  try:
    fv(full_argv)
  except (KeyError, AttributeError) as e:  # ml_collections: an override names a key the config does not have
    key = next((a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.") and str(e).strip("'\"") in a), None)
    raise _usage_error(f"unknown config key {key or e}") from None
  except (flags.Error, ValueError, TypeError) as e:
    raise _usage_error(e) from None
  return fv


def _usage_error(e):
  from distill.errors import UserError

  text = str(e).strip()
  return UserError(text.splitlines()[0] if text else type(e).__name__)


def _setup_jax():
  """Persistent compilation cache (repeat compiles take a fraction of the time) and no TF GPU grabbing."""
  import jax

  cache = os.environ.get("DISTILL_COMPILATION_CACHE", os.path.expanduser("~/.cache/distill/jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _distributed_flags(fv):
  flags.DEFINE_string("coordinator", None, "multi-host: coordinator address host:port", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "multi-host: number of processes", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "multi-host: this process's index", flag_values=fv)
  flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with auto-detection (TPU, SLURM)",
                    flag_values=fv)


def _maybe_initialize_distributed(fv):
  import jax

  if fv.coordinator:
    jax.distributed.initialize(fv.coordinator, fv.num_processes, fv.process_id)
  elif fv.distributed:
    jax.distributed.initialize()


# ----- train ------------------------------------------------------------------------------------------------------


def cmd_train(argv):
  from ml_collections import config_flags

  def define(fv, argv):
    config_flags.DEFINE_config_file("config", None, "config file (configs/*.py)", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs, plots)", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "delete a different run in workdir instead of refusing", flag_values=fv)
    _distributed_flags(fv)

  config_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_path is None and "--config" in argv[:-1]:
    config_path = argv[argv.index("--config") + 1]
  if config_path is not None and not os.path.isfile(config_path.split(":")[0]):
    from distill.errors import UserError
    raise UserError(f"config file not found: {config_path}")
  fv = parse_flags(argv, define)
  require_flags(fv, "config", "workdir")
  config = fv.config
  _maybe_initialize_distributed(fv)
  from distill import pipeline, run

  start = time.time()
  if pipeline.is_pipeline(config):
    records = pipeline.run_pipeline(config, fv.workdir, overwrite=fv.overwrite)
    final = records[pipeline.final_stage(config)]
    print(f"pipeline finished in {time.time() - start:.1f}s; final model {final['bundle']} "
          f"(stage records: {os.path.join(fv.workdir, pipeline.RECORD_FILE)})")
    return
  state = run.train(config, fv.workdir, overwrite=fv.overwrite)
  print(f"trained to step {int(state.step)} in {time.time() - start:.1f}s; workdir {fv.workdir}")


def require_flags(fv, *names):
  from distill.errors import UserError

  for name in names:
    if fv[name].value is None:
      raise UserError(f"--{name} is required")


# ----- export -----------------------------------------------------------------------------------------------------


def _best_metric(workdir: str) -> str:
  from distill import checkpointing

  with open(os.path.join(workdir, checkpointing.BEST_FILE)) as f:
    return json.load(f).get("metric", "fid")


def export_workdir(workdir: str, out: str | None = None, step: int | None = None, best: bool = False) -> str:
  """Export the EMA parameters of a workdir's checkpoint (latest by default, or the best by in-training FID) as a
  sampler bundle."""
  import ml_collections

  import samplers
  from distill import checkpointing, run
  from distill.errors import UserError

  from distill import pipeline

  config = ml_collections.ConfigDict(checkpointing.read_config(workdir))
  if pipeline.is_pipeline(config):  # a pipeline exports the model of its last train stage, as that stage chose
    stage = pipeline.final_stage(config)
    best = best or (step is None and config.stages[stage].get("export", "last") == "best")
    return export_workdir(os.path.join(workdir, stage), out or os.path.join(workdir, "export"), step, best)
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
  meta = samplers.export_bundle(
      out, built.objective.groups[group].network, state.ema[group], sampler_config=run.sampler_config(config),
      data_spec=built.source.spec,
      provenance={"workdir": os.path.abspath(workdir), "step": int(step), "objective": config.objective.name,
                  "data_source": config.data.source, "group": group,
                  "best_by": _best_metric(workdir) if best else ""})
  print(f"exported step {step} ({meta['nfe']} NFE at {meta['default_steps']} steps) to {out}")
  return out


def cmd_export(argv):
  def define(fv, argv):
    flags.DEFINE_string("workdir", None, "training workdir", flag_values=fv)
    flags.DEFINE_string("out", None, "bundle directory (default: WORKDIR/export)", flag_values=fv)
    flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", flag_values=fv)
    flags.DEFINE_bool("best", False, "export the best checkpoint by in-training FID", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "workdir")
  export_workdir(fv.workdir, fv.out, fv.step, fv.best)


# ----- sample -----------------------------------------------------------------------------------------------------


def cmd_sample(argv):
  def define(fv, argv):
    flags.DEFINE_string("sampler", None, "exported sampler bundle", flag_values=fv)
    flags.DEFINE_integer("num", None, "number of samples", flag_values=fv)
    flags.DEFINE_string("out", None, "output .npz (key 'samples', plus 'labels' for conditional models)",
                        flag_values=fv)
    flags.DEFINE_integer("steps", None, "sampler steps (default: the bundle's)", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "random seed; sample i uses fold_in(key(seed), i)", flag_values=fv)
    flags.DEFINE_list("labels", None, "class labels (one, repeated, or one per sample)", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "sampler", "num", "out")
  import jax
  import numpy as np

  import samplers

  s = samplers.load(fv.sampler)
  labels = None
  if fv.labels:
    labels = np.array([int(v) for v in fv.labels], np.int32)
    labels = np.resize(labels, fv.num)
  start = time.time()
  x = s.sample(jax.random.key(fv.seed), fv.num, steps=fv.steps, labels=labels)
  elapsed = time.time() - start
  out = {"samples": x}
  if s.num_classes:
    from distill.generation import default_labels

    out["labels"] = labels if labels is not None else default_labels(np.arange(fv.num), s.num_classes)
  os.makedirs(os.path.dirname(os.path.abspath(fv.out)), exist_ok=True)
  np.savez(fv.out, **out)
  print(f"wrote {fv.num} samples {x.shape} {x.dtype} to {fv.out} "
        f"({s.nfe(fv.steps)} NFE, {elapsed:.1f}s, {fv.num / elapsed:.0f} samples/s)")


# ----- eval -------------------------------------------------------------------------------------------------------


def evaluate_sampler(sampler, data_source: str, num: int, steps_list, seed: int = 0, plot_dir: str | None = None,
                     extractor=None, reference=None):
  """Rows {steps, solver, nfe, seconds, metrics...} for each step count (nfe: the mean per sample, which varies
  only under the adaptive rk45); 2-D data: energy distance and sliced W2 against
  fresh data with the data-vs-data floor; images: a PNG grid per step count, and FID, precision, recall and KID
  when a feature `extractor` and `reference` statistics are given (plus a plot of FID against NFE)."""
  import jax
  import numpy as np

  from distill import data as data_lib
  from distill.evaluation import save_curve, save_image_grid, save_scatter, two_sample_report
  from distill.evaluation import fid as fid_lib
  from distill.generation import default_labels

  source = data_lib.make_source(data_source, seed) if sampler.kind == "points" else None
  labels = default_labels(np.arange(num), sampler.num_classes) if sampler.num_classes else None
  rows = []
  for steps in steps_list:
    start = time.time()
    x, nfe = sampler.sample_with_nfe(jax.random.key(seed), num, steps=steps, labels=labels)
    mean_nfe = sampler.nfe(steps) or round(float(np.mean(nfe)), 1)  # nfe() is None for the adaptive rk45
    row = {"steps": steps, "solver": sampler.meta["sampler"]["solver"], "nfe": mean_nfe,
           "seconds": round(time.time() - start, 3)}
    if extractor is not None:
      metrics = fid_lib.compare(fid_lib.compute_statistics(extractor, [(x, labels)], f"{steps} steps"), reference)
      row.update({k: metrics[k] for k in ("fid", "precision", "recall", "kid", "class_accuracy") if k in metrics})
    if source is not None:
      row.update(two_sample_report(x, source.sample(num, seed=1000 + seed)["x"],
                                   source.sample(num, seed=2000 + seed)["x"]))
    if plot_dir:
      os.makedirs(plot_dir, exist_ok=True)
      path = os.path.join(plot_dir, f"samples_{steps}steps.png")
      if source is not None and x.shape[1] == 2:
        save_scatter(path, {"data": source.sample(num, seed=1000 + seed)["x"], f"{steps} steps": x})
      elif source is None:
        save_image_grid(path, x[:64])
      row["plot"] = path
    rows.append(row)
  if plot_dir and extractor is not None and len(rows) > 1:
    save_curve(os.path.join(plot_dir, "fid_vs_nfe.png"), [r["nfe"] for r in rows], {"FID": [r["fid"] for r in rows]},
               "NFE", "FID", log_x=True)
  return rows


def flow_straightness(sampler, num: int, seed: int = 0, steps: int = 100) -> dict:
  """Straightness S of a bundle's flow (distill/evaluation/straightness.py) on `num` paths of `steps` uniform Euler
  steps from t = 1e-3 to 1, and the mean squared distance of the one-step Euler sample from the path's end."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from distill.evaluation.straightness import straightness

  z = (1.0 - 1e-3) * jax.random.normal(jax.random.key(seed), (num,) + sampler.shape)
  velocity = lambda x, t: sampler.network.velocity(sampler.params, x, jnp.full(x.shape[:1], t))
  s, z1 = straightness(velocity, z, np.linspace(1e-3, 1.0, steps + 1))
  one_step = z + (1.0 - 1e-3) * velocity(z, 1e-3)
  return {"straightness": float(s), "one_step_error": float(jnp.mean((one_step - z1) ** 2))}


def plot_fid_history(workdir: str, path: str) -> bool:
  """Plot the in-training FID (eval/fid in metrics.jsonl) against the training step; False when there is none."""
  from distill.evaluation import save_curve
  from distill.reporting import METRICS_FILE

  metrics_path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(metrics_path):
    return False
  with open(metrics_path) as f:
    points = sorted({r["step"]: r["eval/fid"] for r in map(json.loads, f) if "eval/fid" in r}.items())
  if not points:
    return False
  save_curve(path, [p[0] for p in points], {"FID": [p[1] for p in points]}, "training step", "FID")
  return True


def format_table(rows) -> str:
  keys = [k for k in rows[0] if k != "plot"]
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
  return "\n".join(lines)


def cmd_eval(argv):
  def define(fv, argv):
    flags.DEFINE_string("workdir", None, "training workdir (exported to WORKDIR/export first)", flag_values=fv)
    flags.DEFINE_string("sampler", None, "exported sampler bundle", flag_values=fv)
    flags.DEFINE_string("data", None, "reference data source (default: the one the model was trained on)",
                        flag_values=fv)
    flags.DEFINE_integer("num", 4000, "samples per evaluation", flag_values=fv)
    flags.DEFINE_list("steps", None, "sampler step counts to evaluate (default: the bundle's)", flag_values=fv)
    flags.DEFINE_string("solver", None, "euler, heun, dpm_solver_2m or rk45 (default: the bundle's)", flag_values=fv)
    flags.DEFINE_float("rtol", 1e-5, "rk45 relative tolerance", flag_values=fv)
    flags.DEFINE_float("atol", 1e-5, "rk45 absolute tolerance", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "random seed", flag_values=fv)
    flags.DEFINE_string("json", None, "write the rows as JSON here", flag_values=fv)
    flags.DEFINE_string("plots", None, "folder for plots (default: next to the bundle)", flag_values=fv)
    flags.DEFINE_string("features", None, "image models: also FID/precision/recall/KID in these features "
                        "(inception, classifier:<folder>)", flag_values=fv)
    flags.DEFINE_string("ref", None, "FID reference: data source or `distill fid stats` file (default: --data)",
                        flag_values=fv)
    flags.DEFINE_bool("straightness", False, "also report the flow's straightness S and one-step Euler error",
                      flag_values=fv)

  fv = parse_flags(argv, define)
  from distill.errors import UserError

  if bool(fv.workdir) == bool(fv.sampler):
    raise UserError("give exactly one of --workdir and --sampler")
  import samplers

  bundle = fv.sampler or export_workdir(fv.workdir)
  s = samplers.load(bundle)
  if fv.solver:
    s = s.with_sampler(solver=fv.solver, **(dict(rtol=fv.rtol, atol=fv.atol) if fv.solver == "rk45" else {}))
  data_source = fv.data or s.meta.get("provenance", {}).get("data_source")
  if s.kind == "points" and not data_source:
    raise UserError("this bundle does not record its data source: pass --data")
  steps = [int(v) for v in fv.steps] if fv.steps else [s.default_steps]
  extractor = reference = None
  if fv.features:
    from distill.evaluation import features as features_lib, fid as fid_lib

    if s.kind != "images":
      raise UserError("--features (FID) applies to image models")
    if not (fv.ref or data_source):
      raise UserError("pass --ref (a data source or a `distill fid stats` file) for FID")
    extractor = features_lib.make_features(fv.features)
    reference = fid_lib.reference_statistics(fv.ref or data_source, extractor)
  plot_dir = fv.plots or os.path.join(bundle, "plots")
  rows = evaluate_sampler(s, data_source, fv.num, steps, fv.seed, plot_dir, extractor, reference)
  print(format_table(rows))
  for r in rows:
    if "plot" in r:
      print(f"plot ({r['steps']} steps): {r['plot']}")
  if extractor is not None and len(rows) > 1:
    print(f"plot (FID against NFE): {os.path.join(plot_dir, 'fid_vs_nfe.png')}")
  if fv.workdir and plot_fid_history(fv.workdir, os.path.join(plot_dir, "fid_vs_step.png")):
    print(f"plot (in-training FID against step): {os.path.join(plot_dir, 'fid_vs_step.png')}")
  result = rows
  if fv.straightness:
    straight = flow_straightness(s, min(fv.num, 1000) if s.kind == "images" else fv.num, fv.seed)
    print(f"straightness S {straight['straightness']:.4g} (0 = straight paths); one-step Euler vs 100-step endpoint: "
          f"mean squared error {straight['one_step_error']:.4g}")
    result = {"rows": rows, **straight}
  if fv.json:
    with open(fv.json, "w") as f:
      json.dump(result, f, indent=2)


# ----- entry point ------------------------------------------------------------------------------------------------


def cmd_quickstart(argv):
  def define(fv, argv):
    flags.DEFINE_string("workdir", "runs/quickstart", "where the run, bundle and plots go", flag_values=fv)
    flags.DEFINE_string("data", "toy:checkerboard", "2-D data source", flag_values=fv)

  fv = parse_flags(argv, define)
  from distill import quickstart

  quickstart.main(fv.workdir, fv.data)


def cmd_pairs(argv):
  def define(fv, argv):
    flags.DEFINE_string("teacher", None, "teacher: an exported sampler bundle", flag_values=fv)
    flags.DEFINE_string("teacher_workdir", None, "teacher: a training workdir (exported first)", flag_values=fv)
    flags.DEFINE_string("out", None, "pair store folder (rerun the same command to resume)", flag_values=fv)
    flags.DEFINE_integer("num", None, "number of pairs", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "pair i starts from normal(fold_in(fold_in(key(seed), i), 0))", flag_values=fv)
    flags.DEFINE_integer("shard_size", 10_000, "pairs per shard file", flag_values=fv)
    flags.DEFINE_string("solver", None, "euler, heun, dpm_solver_2m or rk45 (default: the teacher's)", flag_values=fv)
    flags.DEFINE_string("grid", None, "edm, uniform_t or explicit (default: the teacher's)", flag_values=fv)
    flags.DEFINE_integer("steps", None, "solver steps (default: the teacher's)", flag_values=fv)
    flags.DEFINE_float("rtol", 1e-5, "rk45 relative tolerance", flag_values=fv)
    flags.DEFINE_float("atol", 1e-5, "rk45 absolute tolerance", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "out", "num")
  import ml_collections

  from distill import pairs
  from distill.errors import UserError
  from distill.teacher import load_teacher

  if bool(fv.teacher) == bool(fv.teacher_workdir):
    raise UserError("give exactly one of --teacher and --teacher_workdir")
  if fv.teacher_workdir and not os.path.exists(os.path.join(fv.teacher_workdir, "export")):
    export_workdir(fv.teacher_workdir)
  teacher = load_teacher(ml_collections.ConfigDict(dict(bundle=fv.teacher or "", workdir=fv.teacher_workdir or "",
                                                        dtype="float32")))
  sampler = dict(teacher.bundle_meta["sampler"])
  sampler.update({k: v for k, v in (("solver", fv.solver), ("grid", fv.grid)) if v})
  if sampler["solver"] == "rk45":
    sampler.update(rtol=fv.rtol, atol=fv.atol)
  start = time.time()
  meta = pairs.generate_pairs(fv.out, teacher, num=fv.num, seed=fv.seed, shard_size=fv.shard_size,
                              sampler_config=sampler, steps=fv.steps)
  print(f"{meta['num']} pairs from teacher {meta['teacher']['checksum'][:12]}... ({sampler['solver']}, "
        f"{meta['nfe']} NFE) in {fv.out} ({time.time() - start:.1f}s)")


def cmd_boss(argv):
  def define(fv, argv):
    flags.DEFINE_string("sampler", None, "exported model bundle", flag_values=fv)
    flags.DEFINE_integer("steps", None, "number of Euler steps K", flag_values=fv)
    flags.DEFINE_string("out", None, "Bellman grid JSON", flag_values=fv)
    flags.DEFINE_string("bundle_out", None, "also write a copy of the bundle that samples on the grid",
                        flag_values=fv)
    flags.DEFINE_integer("fine_steps", 100, "fine uniform RF-time grid (K_max)", flag_values=fv)
    flags.DEFINE_integer("num", 100, "reference trajectories", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed of the reference noise", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "sampler", "steps", "out")
  import numpy as np

  from distill import boss

  start = time.time()
  grid = boss.export_bellman_sampler(fv.sampler, fv.out, fv.bundle_out, fv.steps, fine_steps=fv.fine_steps,
                                     num_samples=fv.num, seed=fv.seed)
  t = np.asarray(grid["t_fine"])[grid["nodes"]]
  print(f"Bellman {fv.steps}-step grid (RF times {np.round(t, 4).tolist()}): jump cost {grid['cost']:.4g} vs "
        f"uniform {grid['uniform_cost']:.4g}; written to {fv.out}"
        + (f" and {fv.bundle_out}" if fv.bundle_out else "") + f" ({time.time() - start:.1f}s)")


def cmd_fid(argv):
  from distill import cli_fid

  cli_fid.cmd_fid(argv)


def cmd_train_classifier(argv):
  from distill import cli_fid

  cli_fid.cmd_train_classifier(argv)


def cmd_lpips_weights(argv):
  from distill import cli_fid

  cli_fid.cmd_lpips_weights(argv)


COMMANDS = {"train": cmd_train, "export": cmd_export, "sample": cmd_sample, "eval": cmd_eval, "pairs": cmd_pairs,
            "boss": cmd_boss, "fid": cmd_fid,
            "train-classifier": cmd_train_classifier, "lpips-weights": cmd_lpips_weights, "quickstart": cmd_quickstart}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(USAGE)
    return 0
  if argv[0] not in COMMANDS:
    print(f"distill: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
    return 2
  from distill.errors import UserError

  try:
    _setup_jax()
    COMMANDS[argv[0]](argv[1:])
  except (UserError, ValueError) as e:  # ValueError: config problems found while building (objective, data...)
    if os.environ.get("DISTILL_DEBUG"):
      raise
    print(f"distill {argv[0]}: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

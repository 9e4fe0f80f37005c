"""The `distill` command: parses flags and calls distill/api.py (every subcommand is a Python function there).

  distill train --config configs/toy2d_teacher.py --workdir W [--config.a.b=value ...] [--overwrite]
                [--branch_from W0 --branch_step N]
  distill export --workdir W [--out B] [--step N | --best] [--stablehlo]
  distill sample --sampler B --num N --out S.npz [--steps K] [--seed S] [--labels 0,1,...]
  distill restore --sampler B --data SOURCE [--num N] [--steps K | --knob T] [--seed S] [--out R.npz]
  distill eval (--workdir W | --sampler B) [--data SOURCE] [--num N] [--steps 1,2,4] [--json OUT]
               [--solver euler|heun|dpm_solver_2m|rk45] [--features inception|classifier:C] [--ref R]
  distill pairs (--teacher B | --teacher_workdir T) --out P --num N [--solver rk45] [--steps K] [--seed S]
  distill boss --sampler B --steps K --out grid.json [--bundle_out B2]
  distill autodiffusion --sampler B --steps K --out grid.json [--bundle_out B2] [--reference SOURCE] [--num N]
  distill fid (--sampler B | --workdir W | --samples S.npz) [--features inception|classifier:C] [--ref R] [--num N]
  distill fid stats --data SOURCE --out stats.npz [--features F]   |   distill fid convert-weights --pth P --out W
  distill train-classifier --data npz:P.npz --out C   |   distill lpips-weights --vgg V.pth --lin L.pth --out W
  distill quickstart [--workdir runs/quickstart]

`distill COMMAND --help` lists the command's flags. Flags are absl flags, config overrides are ml_collections
`--config.key=value`. Problems with the input (unknown config key, objective or dataset, missing file, checkpoint
mismatch, non-finite loss) are printed as one line.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time

from absl import flags

from distill import cli_fid
from distill.cli_flags import HelpRequested, parse_flags, require_flags
from distill.errors import UserError

USAGE = __doc__


def _setup_jax():
  """Persistent compilation cache (repeat compiles take a fraction of the time)."""
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


def cmd_train(argv):
  from ml_collections import config_flags

  def define(fv, argv):
    config_flags.DEFINE_config_file("config", None, "config file (configs/*.py)", flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    flags.DEFINE_string("workdir", None, "run directory (checkpoints, logs, plots)", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "delete a different run in workdir instead of refusing", flag_values=fv)
    flags.DEFINE_string("branch_from", None, "a new workdir starts from this run's checkpoint at --branch_step "
                        "(distill/branching.py: e.g. a shared warm-up trained once); an existing run resumes",
                        flag_values=fv)
    flags.DEFINE_integer("branch_step", None, "the --branch_from checkpoint's step", flag_values=fv)
    _distributed_flags(fv)

  config_path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if config_path is None and "--config" in argv[:-1]:
    config_path = argv[argv.index("--config") + 1]
  if config_path is not None and not os.path.isfile(config_path.split(":")[0]):
    raise UserError(f"config file not found: {config_path}")
  fv = parse_flags(argv, define, "train", "train a config (one run or a multi-stage pipeline) in a workdir; "
                   "rerunning resumes")
  require_flags(fv, "config", "workdir")
  _maybe_initialize_distributed(fv)
  from distill import api

  if (fv.branch_from is None) != (fv.branch_step is None):
    raise UserError("--branch_from and --branch_step go together")
  if fv.branch_from and fv.overwrite:
    raise UserError("--branch_from starts a new workdir; it does not combine with --overwrite")
  if fv.branch_from and not (os.path.isdir(fv.workdir) and os.listdir(fv.workdir)):
    import jax

    if jax.process_count() > 1:
      raise UserError("--branch_from copies files once: branch with one process (api.branch), then start the "
                      "multi-host run on the branched workdir")
    api.branch(fv.config, fv.branch_from, fv.workdir, fv.branch_step)
    print(f"branched {fv.workdir} off {fv.branch_from} at step {fv.branch_step}")
  start = time.time()
  result = api.train(fv.config, fv.workdir, overwrite=fv.overwrite)
  if "records" in result:
    print(f"pipeline finished in {time.time() - start:.1f}s; final model {result['bundle']} "
          f"(stage records: {os.path.join(fv.workdir, 'pipeline.json')})")
  else:
    print(f"trained to step {result['step']} in {time.time() - start:.1f}s; workdir {fv.workdir}")


def cmd_export(argv):
  def define(fv, argv):
    flags.DEFINE_string("workdir", None, "training workdir", flag_values=fv)
    flags.DEFINE_string("out", None, "bundle directory (default: WORKDIR/export)", flag_values=fv)
    flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", flag_values=fv)
    flags.DEFINE_bool("best", False, "export the best checkpoint by in-training FID", flag_values=fv)
    flags.DEFINE_bool("stablehlo", False, "also write OUT/stablehlo/steps_<K>.bin (K = 1 and the default steps): "
                      "the sampler as StableHLO that runs with only jax and numpy", flag_values=fv)

  fv = parse_flags(argv, define, "export", "export a workdir's EMA model as a self-contained sampler bundle")
  require_flags(fv, "workdir")
  from distill import api

  api.export(fv.workdir, fv.out, fv.step, fv.best, stablehlo=fv.stablehlo)


def cmd_sample(argv):
  def define(fv, argv):
    flags.DEFINE_string("sampler", None, "exported sampler bundle", flag_values=fv)
    flags.DEFINE_integer("num", None, "number of samples", flag_values=fv)
    flags.DEFINE_string("out", None, "output .npz (key 'samples', plus 'labels' for conditional models)",
                        flag_values=fv)
    flags.DEFINE_integer("steps", None, "sampler steps (default: the bundle's)", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "random seed; sample i uses fold_in(key(seed), i)", flag_values=fv)
    flags.DEFINE_list("labels", None, "class labels (one, repeated, or one per sample)", flag_values=fv)

  fv = parse_flags(argv, define, "sample", "draw samples from a bundle into an .npz")
  require_flags(fv, "sampler", "num", "out")
  import numpy as np

  from distill import api

  s = api.load(fv.sampler)
  start = time.time()
  out = api.sample(s, fv.num, fv.steps, fv.seed, [int(v) for v in fv.labels] if fv.labels else None)
  elapsed = time.time() - start
  os.makedirs(os.path.dirname(os.path.abspath(fv.out)), exist_ok=True)
  np.savez(fv.out, **out)
  x = out["samples"]
  print(f"wrote {fv.num} samples {x.shape} {x.dtype} to {fv.out} "
        f"({s.nfe(fv.steps)} NFE, {elapsed:.1f}s, {fv.num / elapsed:.0f} samples/s)")


def cmd_restore(argv):
  def define(fv, argv):
    flags.DEFINE_string("sampler", None, "exported restoration bundle (OFTSR teacher or student)", flag_values=fv)
    flags.DEFINE_string("data", None, "data source of the clean samples to degrade and restore", flag_values=fv)
    flags.DEFINE_integer("num", 2000, "number of samples", flag_values=fv)
    flags.DEFINE_integer("steps", None, "Euler steps of a teacher (default: the bundle's)", flag_values=fv)
    flags.DEFINE_float("knob", None, "an OFTSR student's time in [0, 1]: small for fidelity, large for realism "
                       "(default 0.99, the realism end)", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed of the held-out samples and of the degradation noise", flag_values=fv)
    flags.DEFINE_string("out", None, "optional .npz with target, observed and restored (data space)", flag_values=fv)

  fv = parse_flags(argv, define, "restore", "degrade held-out samples and restore them with a restoration bundle")
  require_flags(fv, "sampler", "data")
  import numpy as np

  from distill import api

  start = time.time()
  out = api.restore(fv.sampler, fv.data, fv.num, fv.steps, fv.knob, fv.seed)
  elapsed = time.time() - start
  if fv.out:
    os.makedirs(os.path.dirname(os.path.abspath(fv.out)), exist_ok=True)
    np.savez(fv.out, **{k: out[k] for k in ("target", "observed", "restored")})
  realism = f" | energy {out['energy']:.4g} (data floor {out['floor']:.4g})" if "energy" in out else ""
  print(f"restored {fv.num}: PSNR {out['psnr']:.2f} dB (input {out['observed_psnr']:.2f} dB) | MSE {out['mse']:.4g}"
        f"{realism} ({elapsed:.1f}s)" + (f"; written to {fv.out}" if fv.out else ""))


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

  fv = parse_flags(argv, define, "eval", "sample a bundle at several step counts and score it against data")
  if bool(fv.workdir) == bool(fv.sampler):
    raise UserError("give exactly one of --workdir and --sampler")
  from distill import api
  from distill.evaluation import features as features_lib, fid as fid_lib

  bundle = fv.sampler or api.export(fv.workdir)
  s = api.load(bundle)
  if fv.solver:
    s = s.with_sampler(solver=fv.solver, **(dict(rtol=fv.rtol, atol=fv.atol) if fv.solver == "rk45" else {}))
  data_source = fv.data or s.meta.get("provenance", {}).get("data_source")
  if s.kind == "points" and not data_source:
    raise UserError("this bundle does not record its data source: pass --data")
  steps = [int(v) for v in fv.steps] if fv.steps else [s.default_steps]
  extractor = reference = None
  if fv.features:
    if s.kind != "images":
      raise UserError("--features (FID) applies to image models")
    if not (fv.ref or data_source):
      raise UserError("pass --ref (a data source or a `distill fid stats` file) for FID")
    extractor = features_lib.make_features(fv.features)
    reference = fid_lib.reference_statistics(fv.ref or data_source, extractor)
  plot_dir = fv.plots or os.path.join(bundle, "plots")
  rows = api.evaluate(s, data_source, fv.num, steps, fv.seed, plot_dir, extractor, reference)
  print(api.format_table(rows))
  for r in rows:
    if "plot" in r:
      print(f"plot ({r['steps']} steps): {r['plot']}")
  if extractor is not None and len(rows) > 1:
    print(f"plot (FID against NFE): {os.path.join(plot_dir, 'fid_vs_nfe.png')}")
  if fv.workdir and api.plot_fid_history(fv.workdir, os.path.join(plot_dir, "fid_vs_step.png")):
    print(f"plot (in-training FID against step): {os.path.join(plot_dir, 'fid_vs_step.png')}")
  result = rows
  if fv.straightness:
    straight = api.flow_straightness(s, min(fv.num, 1000) if s.kind == "images" else fv.num, fv.seed)
    print(f"straightness S {straight['straightness']:.4g} (0 = straight paths); one-step Euler vs 100-step endpoint: "
          f"mean squared error {straight['one_step_error']:.4g}")
    result = {"rows": rows, **straight}
  if fv.json:
    with open(fv.json, "w") as f:
      json.dump(result, f, indent=2)


def cmd_quickstart(argv):
  def define(fv, argv):
    flags.DEFINE_string("workdir", "runs/quickstart", "where the run, bundle and plots go", flag_values=fv)
    flags.DEFINE_string("data", "toy:checkerboard", "2-D data source", flag_values=fv)

  fv = parse_flags(argv, define, "quickstart", "train a 2-D teacher, distil it by reflow, compare them")
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

  fv = parse_flags(argv, define, "pairs", "write a resumable store of (noise, teacher sample) pairs")
  require_flags(fv, "out", "num")
  from distill import api

  start = time.time()
  meta = api.make_pairs(fv.out, fv.num, fv.teacher, fv.teacher_workdir, seed=fv.seed, shard_size=fv.shard_size,
                        solver=fv.solver, grid=fv.grid, steps=fv.steps, rtol=fv.rtol, atol=fv.atol)
  print(f"{meta['num']} pairs from teacher {meta['teacher']['checksum'][:12]}... ({meta['sampler']['solver']}, "
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

  fv = parse_flags(argv, define, "boss", "BOSS: the Bellman-optimal K-step Euler grid of a flow bundle")
  require_flags(fv, "sampler", "steps", "out")
  import numpy as np

  from distill import api

  start = time.time()
  grid = api.boss(fv.sampler, fv.steps, fv.out, fv.bundle_out, fine_steps=fv.fine_steps, num=fv.num, seed=fv.seed)
  t = np.asarray(grid["t_fine"])[grid["nodes"]]
  print(f"Bellman {fv.steps}-step grid (RF times {np.round(t, 4).tolist()}): jump cost {grid['cost']:.4g} vs "
        f"uniform {grid['uniform_cost']:.4g}; written to {fv.out}"
        + (f" and {fv.bundle_out}" if fv.bundle_out else "") + f" ({time.time() - start:.1f}s)")


def cmd_autodiffusion(argv):
  def define(fv, argv):
    flags.DEFINE_string("sampler", None, "exported model bundle (an ODE solver: euler, heun, dpm_solver_2m)",
                        flag_values=fv)
    flags.DEFINE_integer("steps", None, "number of sampling steps K", flag_values=fv)
    flags.DEFINE_string("out", None, "grid JSON", flag_values=fv)
    flags.DEFINE_string("bundle_out", None, "also write a copy of the bundle that samples on the grid",
                        flag_values=fv)
    flags.DEFINE_integer("fine_steps", 100, "candidate steps: the bundle's own grid at this many steps",
                         flag_values=fv)
    flags.DEFINE_integer("num", 2000, "samples per fitness evaluation (the same noise for every candidate)",
                         flag_values=fv)
    flags.DEFINE_string("reference", "", "data source the samples are scored against ('' = the bundle's own samples "
                        "at fine_steps)", flag_values=fv)
    flags.DEFINE_string("features", "", "image features for FID: inception (default) or classifier:<folder>",
                        flag_values=fv)
    flags.DEFINE_integer("population", 50, "population size", flag_values=fv)
    flags.DEFINE_integer("epochs", 10, "generations after the initial population", flag_values=fv)
    flags.DEFINE_float("m_prob", 0.1, "per-gene mutation probability", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed of the noise and of the search", flag_values=fv)

  fv = parse_flags(argv, define, "autodiffusion", "AutoDiffusion: an evolutionary search of a bundle's K steps")
  require_flags(fv, "sampler", "steps", "out")
  from distill import api

  start = time.time()
  record = api.autodiffusion(fv.sampler, fv.steps, fv.out, fv.bundle_out, fine_steps=fv.fine_steps, num=fv.num,
                             seed=fv.seed, reference=fv.reference, features=fv.features, population=fv.population,
                             epochs=fv.epochs, m_prob=fv.m_prob)
  print(f"AutoDiffusion {fv.steps}-step grid (sigmas {[round(s, 4) for s in record['sigmas']]}): {record['metric']} "
        f"{record['fitness']:.4g} vs uniform {record['uniform_fitness']:.4g} after {record['evaluations']} "
        f"evaluations; written to {fv.out}" + (f" and {fv.bundle_out}" if fv.bundle_out else "")
        + f" ({time.time() - start:.1f}s)")


COMMANDS = {"train": cmd_train, "export": cmd_export, "sample": cmd_sample, "restore": cmd_restore, "eval": cmd_eval,
            "pairs": cmd_pairs, "boss": cmd_boss, "autodiffusion": cmd_autodiffusion, "fid": cli_fid.cmd_fid,
            "train-classifier": cli_fid.cmd_train_classifier,
            "lpips-weights": cli_fid.cmd_lpips_weights, "quickstart": cmd_quickstart}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(USAGE)
    return 0
  if argv[0] not in COMMANDS:
    near = difflib.get_close_matches(argv[0], COMMANDS, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    print(f"distill: unknown command {argv[0]!r}; {hint}choose one of {', '.join(COMMANDS)}", file=sys.stderr)
    return 2
  try:
    _setup_jax()
    COMMANDS[argv[0]](argv[1:])
  except HelpRequested as h:
    print(h.args[0])
  except (UserError, ValueError) as e:  # ValueError: config problems found while building (objective, data...)
    if os.environ.get("DISTILL_DEBUG"):
      raise
    print(f"distill {argv[0]}: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Uni-Instruct's divergence phase on 2-D toys: does the last step improve on the SiD warm-up? (issue 28)

  python scripts/benchmark_divergence_2d.py --out bench_out [--toys moons,8gaussians,checkerboard]
      [--divergences rkl,fkl,jeffreys,js,chi2,hellinger] [--train_seeds 0,1,2] [--sets 0,1,2] [--num 20000]
      [--set KEY=VALUE ... --tag NAME] [--recorded_only]

Per toy: the flow-matching teacher (reused from <teacher_root>/<toy>/teacher, else trained) at 100 Euler steps; per
divergence and training seed, configs/toy2d_uni_instruct.py at its defaults (50k teacher pairs; SiD(alpha = 1) warm-up
to step 1000, then the divergence, both with L2 regression to the paired teacher sample; the generator's rate on a
cosine to 0 over the divergence phase, the critics' constant) with three of its checkpoints
exported: the warm-up's end (step 1000), the last step and the best by the in-training energy. Each is scored by
energy distance and SW2 to fresh data on the same --sets sample sets (n = --num); a training seed's value is the
mean over sets, and the table gives mean +- sd over training seeds, the ratio last / warm-up end (mean over seeds of
the per-seed ratios) and the best divergence's last step against the teacher. Runs resume in
<out>/divergence_2d/<toy>/<divergence>_seed<k>, each branched (distill/branching.py) off the pairs and SiD warm-up
that its toy and seed share (<toy>/warm_up_seed<k>, trained once: about 4 minutes here, then 5 a divergence); each
finished run's scores go to --ledger (committed), which later runs read first, so the sweep accumulates across
sessions. Writes <out>/divergence_2d.json and .md and appends to docs/results/score_distillation.md.
"""

from __future__ import annotations

import argparse
import functools
import os


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--toys", default="moons,8gaussians,checkerboard")
  p.add_argument("--divergences", default="rkl,fkl,jeffreys,js,chi2,hellinger")
  p.add_argument("--train_seeds", default="0,1,2")
  p.add_argument("--sets", default="0,1,2", help="sample sets (evaluation seeds)")
  p.add_argument("--num", type=int, default=20_000, help="points per sample set")
  p.add_argument("--teacher_root", default="bench_out/pool_2d", help="<root>/<toy>/teacher is reused when present")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="a variant: override of the distill stage's config (repeatable), e.g. ema.decay=0.999")
  p.add_argument("--tag", default="", help="the variant's name: its runs go to <out>/divergence_2d_<tag>")
  p.add_argument("--recorded_only", action="store_true",
                 help="train nothing: tabulate the ledger's runs, leaving out those not recorded yet")
  p.add_argument("--ledger", default=os.path.join(benchmarking.RESULTS_DIR, "runs", "divergence_2d.json"),
                 help="JSON of finished runs' scores, read before training and written after each run, so the sweep "
                 "accumulates across sessions ('' for none)")
  benchmarking.add_results_flag(p, "score_distillation")
  return p.parse_args()


CHECKPOINTS = ("warm-up end", "last", "best")


def report_name(args) -> str:
  """divergence_2d, or divergence_2d_<tag> for a variant: its runs' folder under --out and its report's name."""
  return "divergence_2d" + (f"_{args.tag}" if args.tag else "")


def overrides(pairs: list[str]) -> dict:
  """{'a.b': value} from ['a.b=value', ...]; values are Python literals where they parse as one, else strings."""
  import ast

  out = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep:
      raise SystemExit(f"--set takes KEY=VALUE, got {pair!r}")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def teacher_config(toy: str):
  from configs import toy2d_teacher

  config = toy2d_teacher.get_config()
  config.data.source = f"toy:{toy}"
  return config


def teacher_workdir(root: str, toy: str) -> str:
  from distill import api

  workdir = os.path.join(root, toy, "teacher")
  api.train(teacher_config(toy), workdir)
  if not os.path.exists(os.path.join(workdir, "export")):
    api.export(workdir)
  return workdir


def run_config(args, toy: str, divergence: str, seed: int):
  """configs/toy2d_uni_instruct.py for one run (its teacher.workdir still to set)."""
  from configs import toy2d_uni_instruct

  config = toy2d_uni_instruct.get_config()
  config.objective.divergence, config.seed, config.data.source = divergence, seed, f"toy:{toy}"
  config.stages.distill.config.train.keep_every = toy2d_uni_instruct.DIVERGENCE_START
  config.stages.distill.config.update_from_flattened_dict(overrides(args.set))
  return config


def fingerprint(config) -> str:
  """A short hash of a config (a ledger entry is only reused by the same settings)."""
  import hashlib

  return hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:10]


def ledger_key(args, *parts) -> str:
  """The ledger's key of one run: the variant, the run's own parts, and the sample sets and their size."""
  return "/".join([report_name(args), *map(str, parts), f"n{args.num}", f"sets{args.sets}"])


def warm_up(args, toy: str, seed: int, teacher) -> str:
  """The workdir of the SiD warm-up (pairs, then distill steps up to divergence_start) that every divergence of `toy`
  and `seed` shares, trained once (as rkl: the divergence is unused before divergence_start,
  tests/test_branching.py)."""
  from configs import toy2d_uni_instruct
  from distill import api

  workdir = os.path.join(args.out, report_name(args), toy, f"warm_up_seed{seed}")
  config = run_config(args, toy, "rkl", seed)
  config.stages.distill.config.train.num_steps = toy2d_uni_instruct.DIVERGENCE_START
  config.teacher.workdir = teacher()
  api.train(config, workdir)
  return workdir


def student_scores(args, toy: str, divergence: str, seed: int, config, teacher, sets: list[int]) -> dict:
  """Train (or resume) one run of `config` (run_config's) and score its warm-up-end, last and best checkpoints
  (exports reused). `teacher()` gives the teacher's workdir."""
  from configs import toy2d_uni_instruct
  from distill import api, benchmarking

  workdir = os.path.join(args.out, report_name(args), toy, f"{divergence}_seed{seed}")
  config.teacher.workdir = teacher()
  if not os.path.exists(workdir):  # a new run branches off the warm-up its toy and seed share
    api.branch(config, warm_up(args, toy, seed, teacher), workdir, toy2d_uni_instruct.DIVERGENCE_START)
  distill = api.train(config, workdir)["records"]["distill"]["workdir"]
  bundles = {"warm-up end": dict(step=toy2d_uni_instruct.DIVERGENCE_START), "last": {}, "best": dict(best=True)}
  scores = {}
  for name, how in bundles.items():
    out = os.path.join(workdir, "export_" + name.replace(" ", "_").replace("-", "_"))
    bundle = out if os.path.exists(out) else api.export(distill, out, **how)
    scores[name] = benchmarking.energy_over_sets(api.load(bundle), f"toy:{toy}", args.num, 1, sets)
  return scores


def summarise(per_seed: list[dict], teacher_energy: float) -> dict:
  """Mean +- sd over training seeds of each checkpoint's energy (each seed: mean over sample sets), and the mean
  per-seed ratio last / warm-up end."""
  import numpy as np

  out = {}
  for name in CHECKPOINTS:
    values = np.array([s[name]["energy"] for s in per_seed])
    out[name] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
  out["last_over_warmup"] = float(np.mean([s["last"]["energy"] / s["warm-up end"]["energy"] for s in per_seed]))
  out["last_over_teacher"] = out["last"][0] / teacher_energy
  return out


def main():
  args = parse()
  from distill import api, benchmarking

  sets = [int(s) for s in args.sets.split(",")]
  train_seeds = [int(s) for s in args.train_seeds.split(",")]
  divergences = args.divergences.split(",")
  ledger, keys = benchmarking.RunLedger(args.ledger), []

  def recorded(key: str, measure) -> dict | None:
    """The ledger's scores under `key`, else `measure()`'s, recorded there (None with --recorded_only)."""
    keys.append(key)
    scores = ledger.get(key)
    if scores is None and not args.recorded_only:
      scores = measure()
      ledger.put(key, scores)
    return scores

  results = {}
  for toy in args.toys.split(","):
    teacher = functools.cache(lambda toy=toy: teacher_workdir(args.teacher_root, toy))
    teacher_scores = recorded(
        ledger_key(args, toy, "teacher_100_steps", fingerprint(teacher_config(toy))),
        lambda: benchmarking.energy_over_sets(api.load(os.path.join(teacher(), "export")), f"toy:{toy}", args.num,
                                              100, sets))
    if teacher_scores is None:
      continue
    runs, seeds = {}, {}
    for d in divergences:
      for seed in train_seeds:
        config = run_config(args, toy, d, seed)
        scores = recorded(ledger_key(args, toy, d, f"seed{seed}", fingerprint(config)),
                          lambda d=d, seed=seed, config=config: student_scores(args, toy, d, seed, config, teacher,
                                                                               sets))
        if scores is not None:
          runs.setdefault(d, []).append(scores)
          seeds.setdefault(d, []).append(seed)
    results[toy] = {"teacher": teacher_scores, "runs": runs, "seeds": seeds,
                    "summary": {d: summarise(r, teacher_scores["energy"]) for d, r in runs.items()}}

  machine = benchmarking.machine_info()
  variant = f" with {', '.join(args.set)} (variant {args.tag!r})" if args.set else " at its defaults"
  lines = [benchmarking.machine_line(machine) + f". configs/toy2d_uni_instruct.py{variant} per divergence; "
           f"energy distance to fresh data, n = {args.num}, averaged over sample sets {sets}; mean +- sd over "
           "the training seeds listed. last / warm-up: mean of the per-seed ratios (below 1: the divergence "
           "phase improved on its SiD warm-up). Runs measured at commits "
           f"{', '.join(ledger.commits(keys)) or 'this one'} ({args.ledger or 'no ledger'}).", ""]
  for toy, r in results.items():
    t = r["teacher"]
    lines += [f"### toy:{toy}", "", f"Teacher at 100 steps: energy {t['energy']:.4g} +- {t['energy_std']:.2g} "
              f"(sets); data floor {t['energy_floor']:.4g}.", "",
              "| divergence | seeds | warm-up end | last | best | last / warm-up | last / teacher |",
              "|---|---|---|---|---|---|---|"]
    for d, s in r["summary"].items():
      cells = " | ".join(f"{s[name][0]:.4g} +- {s[name][1]:.2g}" for name in CHECKPOINTS)
      seeds = ",".join(map(str, r["seeds"][d]))
      lines.append(f"| {d} | {seeds} | {cells} | {s['last_over_warmup']:.2f} | {s['last_over_teacher']:.2f} |")
    if r["summary"]:
      best = min(r["summary"], key=lambda d: r["summary"][d]["last"][0])
      lines += ["", f"Best divergence at the last step: {best}, {r['summary'][best]['last_over_teacher']:.2f}x the "
                "teacher.", ""]
  benchmarking.write_report(args.out, report_name(args), {"machine": machine, "args": vars(args), "results": results},
                            lines, results=args.results)


if __name__ == "__main__":
  main()

"""Score distillation on MNIST: one-step students by SiD and Uni-Instruct divergences against their teacher at its best
NFE, with FID in a feature classifier's space.

  distill train --config configs/mnist_sid.py --workdir runs/mnist_sid \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.teacher.workdir=runs/mnist
  distill train --config configs/mnist_uni_instruct.py --workdir runs/mnist_ui_fkl \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.teacher.workdir=runs/mnist \
      --config.objective.divergence=fkl                      # likewise rkl, jeffreys, ...
  python scripts/benchmark_score_mnist.py --out bench_out --classifier runs/mnist_classifier \
      --runs sid=runs/mnist_sid,fkl=runs/mnist_ui_fkl

Each `--runs` entry names a pipeline workdir whose `distill` stage is the one-step student; all must share one
teacher, which is scored at `--teacher_steps` (Euler step counts, or solver:steps such as heun:50 or rk45:100; its
best is the reference point). `--export final` scores the stage's exported last step (`distill/export`), `--export
best` the checkpoint with the lowest in-training FID (`distill export --workdir W/distill --best --out
W/distill/export_best`, for runs trained with eval.fid_every); an entry `name=W@STEP` scores the distill stage's
kept checkpoint STEP instead (exported to W/distill/export_step<STEP> on first use), e.g. the end of Uni-Instruct's
SiD warm-up against its last step: `--runs warmup=runs/mnist_ui@200,last=runs/mnist_ui`.
FID, precision, recall and KID against half A of the data, the data-vs-data floor (half B), sample grids in
<out>/score_mnist/<model>/, and samples/s of each student against the teacher. The cost of a distillation step
against a teacher step is measured by scripts/benchmark_throughput.py (one machine, one run). `--sample_seeds K`
also scores each student on K - 1 further sample sets (cheap at one step) and reports the mean and spread of its FID,
and of those means over the runs: with a few thousand samples, sampling noise alone moves FID by several points.
`--spread_teacher heun:50` (one `--teacher_steps` entry) scores that teacher row on the same K sample sets (each
costs its NFE times a student's), and each student is compared with it set by set (a student and the teacher start
sample i of a set from the same noise; on MNIST the paired differences were about as noisy as either FID, so the
count of sets below the teacher and the mean difference are what to read). Rows are cached in
<out>/classifier_fid_rows.json (shared with scripts/benchmark_reflow_mnist.py); runs without the export are skipped.
Writes <out>/score_mnist.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  benchmarking.add_classifier_fid_flags(p, teacher_steps="8,16,50")
  p.add_argument("--runs", default="sid=runs/mnist_sid", help="name=workdir,... of score-distillation pipelines")
  p.add_argument("--export", default="final", choices=["final", "best"], help="last step or best in-training FID")
  p.add_argument("--sample_seeds", type=int, default=1,
                 help="score each student on this many sample sets (noise seeds 0..K-1) for the spread of its FID")
  p.add_argument("--spread_teacher", default="",
                 help="a --teacher_steps entry (e.g. heun:50) also scored on the --sample_seeds sets, for paired "
                 "student-minus-teacher differences")
  benchmarking.add_results_flag(p, "score_distillation")
  return p.parse_args()


def teacher_bundle(workdir: str) -> str:
  """The teacher bundle a pipeline's distill stage was trained against (from its saved stage config)."""
  with open(os.path.join(workdir, "distill", "config.json")) as f:
    teacher = json.load(f)["teacher"]
  return teacher["bundle"] or os.path.join(teacher["workdir"], "export")


def step_bundle(workdir: str, step: int) -> str:
  """The distill stage's checkpoint `step` as a bundle, exported on first use (a missing step is an error)."""
  from distill import api

  out = os.path.join(workdir, "distill", f"export_step{step}")
  if not os.path.exists(out):
    api.export(os.path.join(workdir, "distill"), out, step=step)
  return out


def _mean_std(values) -> dict:
  import numpy as np

  return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}


def sample_seed_spread(student_rows: dict, teacher_rows: list | None) -> dict:
  """Per student: FID of each sample set with their mean and standard deviation (ddof 1) and, given the teacher's
  rows on the same sets, the paired differences student - teacher; over the students, the mean and standard
  deviation of their means (the spread between training runs)."""
  out = {"students": {}, "teacher": None}
  if teacher_rows:
    fids = [r["fid"] for r in teacher_rows]
    out["teacher"] = {"solver": teacher_rows[0]["solver"], "steps": teacher_rows[0]["steps"], "fids": fids,
                      **_mean_std(fids)}
  for name, rows in student_rows.items():
    fids = [r["fid"] for r in rows]
    out["students"][name] = {"fids": fids, **_mean_std(fids)}
    if out["teacher"]:
      diffs = [f - t for f, t in zip(fids, out["teacher"]["fids"])]
      out["students"][name]["minus_teacher"] = {"diffs": diffs, **_mean_std(diffs),
                                                "sets_below": sum(d < 0 for d in diffs)}
  out["over_students"] = _mean_std([v["mean"] for v in out["students"].values()])
  return out


def spread_lines(spread: dict) -> list[str]:
  fmt = lambda v: "-" if v is None else f"{v:.2f}"
  per_set = lambda fids: ", ".join(f"{f:.2f}" for f in fids)
  k = len(next(iter(spread["students"].values()))["fids"])
  t = spread["teacher"]
  lines = [f"FID over {k} sample set(s) (noise seeds 0..{k - 1}; {len(spread['students'])} runs):", "",
           "| model | mean FID | std | per sample set | minus teacher, mean (std) | sets below the teacher |",
           "|---|---|---|---|---|---|"]
  if t:
    lines.append(f"| teacher ({t['solver']}, {t['steps']} steps) | {t['mean']:.2f} | {fmt(t['std'])} | "
                 f"{per_set(t['fids'])} | | |")
  for name, v in spread["students"].items():
    d = v.get("minus_teacher")
    paired = f"{d['mean']:+.2f} ({fmt(d['std'])}) | {d['sets_below']} of {k}" if d else " | "
    lines.append(f"| {name} | {v['mean']:.2f} | {fmt(v['std'])} | {per_set(v['fids'])} | {paired} |")
  o = spread["over_students"]
  lines += ["", f"Over the runs: mean {o['mean']:.2f}, standard deviation {fmt(o['std'])}."]
  return lines


def main():
  args = parse()
  import samplers
  from distill import benchmarking

  work = os.path.join(args.out, "score_mnist")
  os.makedirs(work, exist_ok=True)
  runs, bundles = {}, {}
  for item in args.runs.split(","):
    name, entry = item.split("=", 1)
    runs[name], _, step = entry.partition("@")
    bundles[name] = step_bundle(runs[name], int(step)) if step else os.path.join(
        runs[name], "distill", "export" if args.export == "final" else "export_best")
  finished = {name: b for name, b in bundles.items() if os.path.exists(b)}
  for name in set(runs) - set(finished):
    print(f"{name}: {bundles[name]} does not exist; skipped", flush=True)
  if not finished:
    raise SystemExit("no finished run")
  teacher_bundles = {name: teacher_bundle(runs[name]) for name in finished}
  if len(set(teacher_bundles.values())) != 1:
    raise SystemExit(f"the runs were distilled from different teachers: {teacher_bundles}")

  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  loaded = {"teacher": samplers.load(next(iter(teacher_bundles.values())))}
  teacher_rows = benchmarking.parse_teacher_rows(args.teacher_steps)
  rows = [bench.row("teacher", loaded["teacher"], steps, os.path.join(work, "teacher"), solver)
          for solver, steps in teacher_rows]
  teacher_spread = None
  if args.spread_teacher:
    (spec,) = benchmarking.parse_teacher_rows(args.spread_teacher)
    if spec not in teacher_rows:
      raise SystemExit(f"--spread_teacher {args.spread_teacher} is not one of --teacher_steps {args.teacher_steps}")
    solver, steps = spec
    teacher_spread = [rows[teacher_rows.index(spec)]] + [
        bench.row("teacher", loaded["teacher"], steps, "", solver, seed=seed) for seed in range(1, args.sample_seeds)]
  student_spread = {}
  for name, bundle in finished.items():
    loaded[name] = samplers.load(bundle)
    rows.append(bench.row(name, loaded[name], 1, os.path.join(work, name)))
    student_spread[name] = [rows[-1]] + [bench.row(name, loaded[name], 1, "", seed=seed)
                                         for seed in range(1, args.sample_seeds)]

  summary, summary_lines = benchmarking.one_step_summary(rows, loaded, list(finished), args.rate_num)
  result = {"machine": benchmarking.machine_info(), "num": args.num, "data": args.data,
            "floor": {k: bench.floor[k] for k in ("fid", "precision", "recall", "kid")}, "rows": rows, **summary,
            "export": args.export, "runs": {name: {"workdir": runs[name], "bundle": b} for name, b in finished.items()},
            "sample_seed_spread": sample_seed_spread(student_spread, teacher_spread)}
  lines = [benchmarking.machine_line(result["machine"]), "", bench.floor_line(args.classifier), "",
           *benchmarking.fid_table(rows), "", *summary_lines, "", *spread_lines(result["sample_seed_spread"]), "",
           f"Students: the {'last step' if args.export == 'final' else 'checkpoint with the best in-training FID'} "
           "of each run (name=W@STEP entries: checkpoint STEP)."]
  benchmarking.write_report(args.out, "score_mnist", result, lines, results=args.results)


if __name__ == "__main__":
  main()

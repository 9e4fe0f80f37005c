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
W/distill/export_best`, for runs trained with eval.fid_every).
FID, precision, recall and KID against half A of the data, the data-vs-data floor (half B), sample grids in
<out>/score_mnist/<model>/, and samples/s of each student against the teacher. The cost of a distillation step
against a teacher step is measured by scripts/benchmark_throughput.py (one machine, one run). `--sample_seeds K`
also scores each student on K - 1 further sample sets (cheap at one step) and reports the mean and spread of its FID,
and of those means over the runs: with a few thousand samples, sampling noise alone moves FID by several points.
The teacher rows use sample seed 0 only (each costs its NFE times more). Rows are cached in
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
  return p.parse_args()


def teacher_bundle(workdir: str) -> str:
  """The teacher bundle a pipeline's distill stage was trained against (from its saved stage config)."""
  with open(os.path.join(workdir, "distill", "config.json")) as f:
    teacher = json.load(f)["teacher"]
  return teacher["bundle"] or os.path.join(teacher["workdir"], "export")


def sample_seed_spread(spread_rows: dict) -> dict:
  """Per student: FID of each sample set, their mean and standard deviation (ddof 1); and over the students, the
  mean and standard deviation of those means (the spread between training runs)."""
  import numpy as np

  out = {"students": {}}
  for name, rs in spread_rows.items():
    fids = [r["fid"] for r in rs]
    out["students"][name] = {"fids": fids, "mean": float(np.mean(fids)),
                             "std": float(np.std(fids, ddof=1)) if len(fids) > 1 else None}
  means = [v["mean"] for v in out["students"].values()]
  out["over_students"] = {"mean": float(np.mean(means)),
                          "std": float(np.std(means, ddof=1)) if len(means) > 1 else None}
  return out


def spread_lines(spread: dict) -> list[str]:
  fmt = lambda v: "-" if v is None else f"{v:.2f}"
  k = len(next(iter(spread["students"].values()))["fids"])
  lines = [f"FID of each student over {k} sample set(s) (noise seeds 0..{k - 1}, {len(spread['students'])} runs):", "",
           "| student | mean FID | std | per sample set |", "|---|---|---|---|"]
  for name, v in spread["students"].items():
    lines.append(f"| {name} | {v['mean']:.2f} | {fmt(v['std'])} | {', '.join(f'{f:.2f}' for f in v['fids'])} |")
  o = spread["over_students"]
  lines += ["", f"Over the runs: mean {o['mean']:.2f}, standard deviation {fmt(o['std'])}."]
  return lines


def main():
  args = parse()
  import samplers
  from distill import benchmarking

  work = os.path.join(args.out, "score_mnist")
  os.makedirs(work, exist_ok=True)
  runs = dict(item.split("=", 1) for item in args.runs.split(","))
  bundles = {name: os.path.join(w, "distill", "export" if args.export == "final" else "export_best")
             for name, w in runs.items()}
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
  rows = [bench.row("teacher", loaded["teacher"], steps, os.path.join(work, "teacher"), solver)
          for solver, steps in benchmarking.parse_teacher_rows(args.teacher_steps)]
  spread_rows = {}
  for name, bundle in finished.items():
    loaded[name] = samplers.load(bundle)
    rows.append(bench.row(name, loaded[name], 1, os.path.join(work, name)))
    spread_rows[name] = [rows[-1]] + [bench.row(name, loaded[name], 1, "", seed=seed)
                                      for seed in range(1, args.sample_seeds)]

  summary, summary_lines = benchmarking.one_step_summary(rows, loaded, list(finished), args.rate_num)
  result = {"machine": benchmarking.machine_info(), "num": args.num, "data": args.data,
            "floor": {k: bench.floor[k] for k in ("fid", "precision", "recall", "kid")}, "rows": rows, **summary,
            "export": args.export, "runs": {name: {"workdir": runs[name], "bundle": b} for name, b in finished.items()},
            "sample_seed_spread": sample_seed_spread(spread_rows)}
  lines = [benchmarking.machine_line(result["machine"]), "", bench.floor_line(args.classifier), "",
           *benchmarking.fid_table(rows), "", *summary_lines, "", *spread_lines(result["sample_seed_spread"]), "",
           f"Students: the {'last step' if args.export == 'final' else 'checkpoint with the best in-training FID'} "
           "of each run."]
  benchmarking.write_report(args.out, "score_mnist", result, lines)


if __name__ == "__main__":
  main()

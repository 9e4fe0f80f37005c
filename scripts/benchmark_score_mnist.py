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
teacher, which is scored at `--teacher_steps` Euler steps (its best is the reference point). FID, precision,
recall and KID against half A of the data, the data-vs-data floor (half B), sample grids in
<out>/score_mnist/<model>/, samples/s of each student against the teacher, and the cost of a distillation step
relative to a teacher training step, per image (from each run's logged rate). Rows are cached in
<out>/classifier_fid_rows.json (shared with scripts/benchmark_reflow_mnist.py); unfinished runs are skipped. Writes
<out>/score_mnist.json and .md.
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
  return p.parse_args()


def step_cost(workdir: str) -> dict | None:
  """{seconds_per_step, batch_size, seconds_per_image} of a training run: the median of its logged steps_per_sec
  (metrics.jsonl) and its config's batch size; None when the run logged no rate."""
  import numpy as np

  path = os.path.join(workdir, "metrics.jsonl")
  rates = [r["steps_per_sec"] for r in map(json.loads, open(path)) if "steps_per_sec" in r] \
      if os.path.exists(path) else []
  if not rates:
    return None
  batch = json.load(open(os.path.join(workdir, "config.json")))["data"]["batch_size"]
  seconds = float(1.0 / np.median(rates))
  return {"seconds_per_step": seconds, "batch_size": batch, "seconds_per_image": seconds / batch}


def main():
  args = parse()
  import samplers
  from distill import benchmarking

  work = os.path.join(args.out, "score_mnist")
  os.makedirs(work, exist_ok=True)
  runs = dict(item.split("=", 1) for item in args.runs.split(","))
  paths = {name: os.path.join(w, "pipeline.json") for name, w in runs.items()}
  records = {name: json.load(open(p)) if os.path.exists(p) else {} for name, p in paths.items()}
  finished = {name: r for name, r in records.items() if "distill" in r}
  for name in set(runs) - set(finished):
    print(f"{name}: {runs[name]} has no finished distill stage yet; skipped", flush=True)
  if not finished:
    raise SystemExit("no finished run")
  teachers = {r["teacher"]["checksum"] for r in finished.values()}
  if len(teachers) != 1:
    raise SystemExit(f"the runs were distilled from {len(teachers)} different teachers")

  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  first = next(iter(finished.values()))
  loaded = {"teacher": samplers.load(first["teacher"]["bundle"])}
  rows = [bench.row("teacher", loaded["teacher"], int(s), os.path.join(work, "teacher"))
          for s in args.teacher_steps.split(",")]
  for name, r in finished.items():
    loaded[name] = samplers.load(r["distill"]["bundle"])
    rows.append(bench.row(name, loaded[name], 1, os.path.join(work, name)))

  summary, summary_lines = benchmarking.one_step_summary(rows, loaded, list(finished), args.rate_num)
  bundle = first["teacher"]["bundle"]  # a run's teacher is <teacher workdir>/export
  costs = {"teacher": step_cost(os.path.dirname(os.path.normpath(bundle)))}
  costs |= {name: step_cost(r["distill"]["workdir"]) for name, r in finished.items()}
  per_image = {n: c["seconds_per_image"] for n, c in costs.items() if c}
  cost_line = "Training cost per image (median logged rate of each run; runs sharing the CPU read slower): "
  cost_line += ", ".join(
      f"{n} {t * 1e3:.1f} ms" + (f" ({t / per_image['teacher']:.1f}x teacher)" if "teacher" in per_image and
                                 n != "teacher" else "") for n, t in per_image.items())
  result = {"machine": benchmarking.machine_info(), "num": args.num, "data": args.data,
            "floor": {k: bench.floor[k] for k in ("fid", "precision", "recall", "kid")}, "rows": rows, **summary,
            "step_cost": costs, "runs": records}
  lines = [benchmarking.machine_line(result["machine"]), "", bench.floor_line(args.classifier), "",
           *benchmarking.fid_table(rows), "", *summary_lines, "", cost_line]
  benchmarking.write_report(args.out, "score_mnist", result, lines)


if __name__ == "__main__":
  main()

"""Reflow on MNIST: the teacher at several NFE versus the one-step reflow student (configs/mnist_reflow.py) and the
SlimFlow student about half the teacher's size (configs/mnist_slimflow.py), with FID in a feature classifier's space.

  distill train --config configs/mnist_reflow.py --workdir runs/mnist_reflow \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.teacher.workdir=runs/mnist
  distill train --config configs/mnist_slimflow.py --workdir runs/mnist_slimflow \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.teacher.workdir=runs/mnist
  python scripts/benchmark_reflow_mnist.py --out bench_out --classifier runs/mnist_classifier \
      --reflow runs/mnist_reflow --slimflow runs/mnist_slimflow

The data are split at random into two disjoint halves A and B (`--num` images each): reference statistics come from
A, the data-vs-data floor is B against A, and every model is scored with `--num` samples against A (FID, precision,
recall, KID, class accuracy of the classifier on the balanced labels when the model is conditional). Rows: the
teacher at `--teacher_steps` (Euler step counts, or solver:steps; its best is the reference point; 20 Euler steps
made the pairs), the 2-rectified flow at 1, 2, 4, 8, 16 steps (8 made its pairs), the one-step student distilled
from the 2-RF, that student refined on the teacher's pairs (stage `refine`), the annealing-reflow student at 1, 2, 4
steps and the flow-guided student at 1 step.
Speed: samples/s of each one-step student against the teacher at its best NFE and at its default NFE. Sample grids
go to <out>/reflow_mnist/<model>/. Writes <out>/reflow_mnist.json and .md; finished rows are cached in
<out>/classifier_fid_rows.json (shared with scripts/benchmark_score_mnist.py), so an interrupted run continues, and
models whose stage is not finished yet are skipped (run the script again later; the report is written once every
model has its rows).
"""

from __future__ import annotations

import argparse
import os


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  benchmarking.add_classifier_fid_flags(p, teacher_steps="8,16,20,50")
  p.add_argument("--reflow", default="runs/mnist_reflow", help="workdir of configs/mnist_reflow.py")
  p.add_argument("--slimflow", default="runs/mnist_slimflow", help="workdir of configs/mnist_slimflow.py")
  benchmarking.add_results_flag(p, "reflow")
  return p.parse_args()


STUDENTS = ("one-step reflow student", "refined reflow student", "SlimFlow student")


def main():
  args = parse()
  import samplers
  from distill import benchmarking, pipeline

  work = os.path.join(args.out, "reflow_mnist")
  os.makedirs(work, exist_ok=True)
  reflow, slim = pipeline.load_records(args.reflow), pipeline.load_records(args.slimflow)
  if "teacher" not in reflow:
    raise SystemExit(f"{args.reflow}: the teacher stage is not finished; run the pipeline first")
  if "teacher" in slim and slim["teacher"]["checksum"] != reflow["teacher"]["checksum"]:
    raise SystemExit("the two pipelines were run from different teachers")

  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  own = lambda *steps: [(None, s) for s in steps]  # the bundle's own solver
  models = [("teacher", reflow, "teacher", benchmarking.parse_teacher_rows(args.teacher_steps)),
            ("2-RF", reflow, "reflow", own(1, 2, 4, 8, 16)), ("one-step reflow student", reflow, "distill", own(1)),
            ("refined reflow student", reflow, "refine", own(1)),
            ("SlimFlow annealing reflow", slim, "anneal", own(1, 2, 4)), ("SlimFlow student", slim, "guided", own(1))]
  rows, loaded = [], {}
  for name, records, stage, steps_list in models:
    if stage not in records:
      print(f"{name}: stage {stage!r} not finished yet; rerun this script when it is", flush=True)
      continue
    sampler = loaded[name] = samplers.load(records[stage]["bundle"])
    rows += [bench.row(name, sampler, steps, os.path.join(work, name.replace(" ", "_")), solver)
             for solver, steps in steps_list]

  if len(loaded) < len(models):
    return  # the finished rows are cached; the report needs every model
  summary, summary_lines = benchmarking.one_step_summary(rows, loaded, STUDENTS, args.rate_num)
  pipelines = {"reflow": reflow, "slimflow": slim}
  result = {"machine": benchmarking.machine_info(), "num": args.num, "data": args.data,
            "floor": {k: bench.floor[k] for k in ("fid", "precision", "recall", "kid")}, "rows": rows,
            **summary, "pipelines": pipelines}
  lines = [benchmarking.machine_line(result["machine"]), "", bench.floor_line(args.classifier), "",
           *benchmarking.fid_table(rows), "", *summary_lines,
           "", "Pipeline stage seconds: " + ", ".join(
               f"{p}/{s} {r.get('seconds', 0):.0f}" for p, recs in pipelines.items()
               for s, r in recs.items() if isinstance(r, dict) and "seconds" in r)]
  benchmarking.write_report(args.out, "reflow_mnist", result, lines, results=args.results)


if __name__ == "__main__":
  main()

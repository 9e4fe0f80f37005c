"""NitroFusion's pool ablation on MNIST at matched compute: a single head per slot / a pool without refresh / the pool
with refresh, each the student of configs/mnist_nitro.py trained for the same steps on the same teacher pairs, scored at
1, 2 and 4 steps from the same weights.

  python scripts/benchmark_pool_mnist.py --out bench_out --teacher runs/mnist/export [--steps 1500] [--sample_seeds 3]

Needs a finished teacher bundle and the feature classifier (`distill train-classifier --data npz:... --out
runs/mnist_classifier`). Makes the teacher's 10k pairs (20 Euler steps) once in OUT/pool_mnist/pairs, trains the
three variants in OUT/pool_mnist/<variant> (resumable), and scores each (and the teacher at --teacher_steps) on
--sample_seeds sets of --num samples: classifier FID, precision and recall as mean +- sd over the sets, with each
variant's training seconds per step. Writes OUT/pool_mnist.json and .md and appends to docs/results/adversarial.md.
"""

from __future__ import annotations

import argparse
import os
import time

VARIANTS = {  # objective.pool overrides; the rest is configs/mnist_nitro.py's pool
    "single head": dict(groups=1, heads_per_slot=1, refresh=0.0),
    "pool without refresh": dict(refresh=0.0),
    "pool": dict(),
}


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  benchmarking.add_classifier_fid_flags(p, teacher_steps="50")
  p.add_argument("--teacher", default="runs/mnist/export", help="the teacher's bundle")
  p.add_argument("--steps", type=int, default=0, help="training steps per variant (0: the config's)")
  p.add_argument("--sample_steps", default="1,2,4")
  p.add_argument("--sample_seeds", type=int, default=3)
  p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
  benchmarking.add_results_flag(p, "adversarial")
  return p.parse_args()


def variant_config(name: str, pairs: str, teacher: str, steps: int):
  from configs import mnist_nitro

  c = mnist_nitro.student(steps) if steps else mnist_nitro.student()
  c.objective.pool.update(VARIANTS[name])
  c.data.source, c.eval.reference, c.teacher.bundle = f"pairs:{pairs}", "", teacher
  c.train.eval_every = 0
  return c


def mean_sd(rows: list[dict], key: str) -> tuple[float, float]:
  import numpy as np

  values = np.array([r[key] for r in rows])
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main():
  args = parse()
  from distill import api, benchmarking

  work = os.path.join(args.out, "pool_mnist")
  pairs = os.path.join(work, "pairs")
  api.make_pairs(pairs, 10_000, teacher=args.teacher, seed=1, steps=20)
  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  seeds = range(args.sample_seeds)
  teacher = api.load(args.teacher)
  table, result = [], {"variants": {}, "teacher": {}}
  for solver, steps in benchmarking.parse_teacher_rows(args.teacher_steps):
    rows = [bench.row("teacher", teacher, steps, os.path.join(work, "teacher"), solver, seed=s) for s in seeds]
    table.append(("teacher", steps, rows, None))
  for name in args.variants.split(","):
    workdir = os.path.join(work, name.replace(" ", "_"))
    config = variant_config(name, pairs, args.teacher, args.steps)
    start = time.time()
    api.train(config, workdir)
    seconds_per_step = (time.time() - start) / config.train.num_steps  # a resumed run reports the part it ran
    student = api.load(api.export(workdir))
    for steps in (int(s) for s in args.sample_steps.split(",")):
      rows = [bench.row(name, student, steps, os.path.join(work, f"{name}_{steps}"), seed=s) for s in seeds]
      table.append((name, steps, rows, seconds_per_step))

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine), "", bench.floor_line(args.classifier),
           f"Mean +- sd over {args.sample_seeds} sample sets; students at their last step, same steps, batch and pairs.",
           "", "| model | steps | NFE | FID | precision | recall | train s/step |", "|---|---|---|---|---|---|---|"]
  for name, steps, rows, seconds in table:
    stats = {k: mean_sd(rows, k) for k in ("fid", "precision", "recall")}
    result["teacher" if name == "teacher" else "variants"].setdefault(name, {})[steps] = {
        "rows": rows, **{k: {"mean": m, "sd": s} for k, (m, s) in stats.items()}, "seconds_per_step": seconds}
    lines.append(f"| {name} | {steps} | {rows[0]['nfe']} | {stats['fid'][0]:.2f} +- {stats['fid'][1]:.2f} | "
                 f"{stats['precision'][0]:.3f} +- {stats['precision'][1]:.3f} | "
                 f"{stats['recall'][0]:.3f} +- {stats['recall'][1]:.3f} | "
                 f"{'-' if seconds is None else f'{seconds:.3f}'} |")
  benchmarking.write_report(args.out, "pool_mnist", {"machine": machine, **result}, lines, results=args.results)


if __name__ == "__main__":
  main()

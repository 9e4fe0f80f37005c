"""Multi-student distillation on MNIST: K students against the single student at matched compute, both wrapping the
same objective, with aggregate and per-class classifier FID.

  python scripts/benchmark_msd_mnist.py --out bench_out [--teacher B] [--ks 1,5] [--objective sid|reflow]
      [--steps N] [--sample_seeds 3] [--classifier runs/mnist_classifier]

The class-conditional teacher is --teacher, or the teacher stage of configs/mnist_msd.py trained in OUT/msd_mnist/
teacher. For every K, the distill stage of configs/mnist_msd.py (--objective; reflow adds the teacher's 10k pairs,
20 Euler steps) with multi_student.k = K and the same batch (40 rows split between the students) and steps, so every
K sees the same images for the same number of generator updates (K = 1 is the single student). Each is scored at its
last step: classifier FID, precision and recall of --num routed samples (balanced labels) against half A of the
data, on --sample_seeds sample sets (mean +- sd), and the per-class FID (the samples of class c against the class-c
images of half A; --num / 10 samples per class, so only comparable between rows); the teacher at --teacher_steps.
Runs resume (OUT/msd_mnist/...). Writes OUT/msd_mnist.json and .md and appends to docs/results/multi_student.md.
"""

from __future__ import annotations

import argparse
import os


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  benchmarking.add_classifier_fid_flags(p, teacher_steps="50,100")
  p.add_argument("--teacher", default="", help="a class-conditional teacher bundle ('' trains one)")
  p.add_argument("--ks", default="1,5")
  p.add_argument("--objective", default="sid", choices=("sid", "reflow"))
  p.add_argument("--steps", type=int, default=0, help="distillation steps (0: the config's)")
  p.add_argument("--sample_seeds", type=int, default=3)
  benchmarking.add_results_flag(p, "multi_student")
  return p.parse_args()


def per_class_fid(bench, sampler, num: int, seed: int = 0) -> list[float]:
  """FID of num / C samples of each class c against the class-c images of the benchmark's half A."""
  import jax
  import numpy as np

  from distill.evaluation import fid

  images, labels = next(iter(fid.source_stream(bench.data, chunk=10**9)))
  half_a = np.random.default_rng(0).permutation(len(images))[:bench.num]
  classes, per = sampler.num_classes, num // sampler.num_classes
  out = []
  for c in range(classes):
    real = half_a[labels[half_a] == c]
    reference = fid.compute_statistics(bench.extractor, [(images[real], labels[real])], f"class {c}")
    x = sampler.sample(jax.random.key(seed), per, steps=1, labels=np.full(per, c, np.int32))
    out.append(float(fid.compare(fid.compute_statistics(bench.extractor, [(x, np.full(per, c))], f"class {c}"),
                                 reference)["fid"]))
  return out


def main():
  args = parse()
  import numpy as np

  from configs import mnist_msd
  from distill import api, benchmarking

  root = os.path.join(args.out, "msd_mnist")
  teacher = args.teacher
  if not teacher:
    config = mnist_msd.teacher()
    config.data.source = args.data
    api.train(config, os.path.join(root, "teacher"))
    teacher = api.export(os.path.join(root, "teacher"))
  pairs = os.path.join(root, "pairs")
  if args.objective == "reflow":
    api.make_pairs(pairs, 10_000, teacher=teacher, seed=1, steps=20)
  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  seeds = range(args.sample_seeds)
  summary = {}
  teacher_sampler = api.load(teacher)
  for solver, steps in benchmarking.parse_teacher_rows(args.teacher_steps):
    rows = [bench.row("teacher", teacher_sampler, steps, os.path.join(root, "teacher_plots"), solver, seed=s)
            for s in seeds]
    summary[f"teacher, {solver or 'euler'} {steps} steps"] = {"rows": rows}
  for k in (int(v) for v in args.ks.split(",")):
    config = mnist_msd.student(args.objective, k)
    if args.steps:
      config.train.num_steps = args.steps
      config.optim.decay_steps = args.steps if config.optim.decay_steps else 0
    config.data.source = f"pairs:{pairs}" if args.objective == "reflow" else args.data
    config.eval.reference, config.teacher.bundle = args.data, teacher
    workdir = os.path.join(root, f"{args.objective}_k{k}")
    api.train(config, workdir)
    student = api.load(api.export(workdir))
    name = f"{args.objective}, K = {k}"
    rows = [bench.row(name, student, 1, os.path.join(root, f"k{k}_plots"), seed=s) for s in seeds]
    summary[name] = {"rows": rows, "per_class_fid": per_class_fid(bench, student, args.num)}

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine), "", bench.floor_line(args.classifier),
           f"Mean +- sd over {args.sample_seeds} sample sets; students at their last step, same batch and steps; "
           f"per-class FID: {args.num // 10} samples per class against that class of half A (mean over classes).", "",
           "| model | NFE | FID | precision | recall | per-class FID |", "|---|---|---|---|---|---|"]
  for name, s in summary.items():
    stats = {key: (np.mean([r[key] for r in s["rows"]]), np.std([r[key] for r in s["rows"]], ddof=1)
                   if len(s["rows"]) > 1 else 0.0) for key in ("fid", "precision", "recall")}
    per_class = f"{np.mean(s['per_class_fid']):.2f}" if "per_class_fid" in s else "-"
    lines.append(f"| {name} | {s['rows'][0]['nfe']} | {stats['fid'][0]:.2f} +- {stats['fid'][1]:.2f} | "
                 f"{stats['precision'][0]:.3f} +- {stats['precision'][1]:.3f} | "
                 f"{stats['recall'][0]:.3f} +- {stats['recall'][1]:.3f} | {per_class} |")
  benchmarking.write_report(args.out, "msd_mnist", {"machine": machine, "summary": summary}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

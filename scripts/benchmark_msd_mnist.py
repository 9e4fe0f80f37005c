"""Multi-student distillation on MNIST: K students against the single student at matched compute, both wrapping the
same objective, with aggregate and per-class classifier FID.

  python scripts/benchmark_msd_mnist.py --out bench_out [--teacher B] [--ks 1,5] [--objective sid|sid_regression|reflow]
      [--small [--tsm_steps N]] [--steps N] [--layout vmap|unroll|map] [--shared fake] [--num_pairs 10000]
      [--sample_seeds 3] [--classifier runs/mnist_classifier]

The class-conditional teacher is --teacher, or the teacher stage of configs/mnist_msd.py trained in OUT/msd_mnist/
teacher. For every K, the distill stage of configs/mnist_msd.py (--objective; reflow and sid_regression add
--num_pairs teacher pairs, 20 Euler steps) with multi_student.k = K and the same batch (40 rows split between the
students) and steps, so every K sees the same images for the same number of generator updates (K = 1 is the single
student). Each is scored at its last step: classifier FID, precision and recall of --num routed samples (balanced
labels) against half A of the data, on --sample_seeds sample sets (mean +- sd); the per-partition FID (for each part
of the largest K's partition, samples of its classes against its classes' images of half A; --num / K samples per
part, so only comparable between rows, K = 1 included); and the sampling rate of a mixed-label batch. The teacher at
--teacher_steps.
--shared: networks every K > 1 shares between its students (multi_student.shared, e.g. one conditional fake score
that learns from the whole batch, spec 8.3 (ii)). --small: students 4x smaller than the teacher
(configs/mnist_msd_small.py), each K starting from its own teacher score matching stage, always with reflow.
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
  p.add_argument("--objective", default="sid", choices=("sid", "sid_regression", "reflow"))
  p.add_argument("--steps", type=int, default=0, help="distillation steps (0: the config's)")
  p.add_argument("--sample_seeds", type=int, default=3)
  p.add_argument("--small", action="store_true", help="4x smaller students through teacher score matching")
  p.add_argument("--tsm_steps", type=int, default=0, help="teacher score matching steps with --small (0: the config's)")
  p.add_argument("--num_pairs", type=int, default=10_000, help="teacher pairs for reflow distillation")
  p.add_argument("--layout", default="", choices=("", "vmap", "unroll", "map"),
                 help="multi_student.layout ('': the config's; all give the same values)")
  p.add_argument("--shared", default="", help="comma-separated groups shared by the K > 1 students ('': none)")
  benchmarking.add_results_flag(p, "multi_student")
  return p.parse_args()


def partition_fid(bench, sampler, table, num: int, seed: int = 0) -> list[float]:
  """For each part k of the class -> part `table`: FID of num / K samples of its classes (balanced) against the
  images of its classes in the benchmark's half A."""
  import jax
  import numpy as np

  from distill.evaluation import fid

  images, labels = next(iter(fid.source_stream(bench.data, chunk=10**9)))
  half_a = np.random.default_rng(0).permutation(len(images))[:bench.num]
  table, out = np.asarray(table), []
  parts = int(table.max()) + 1
  for k in range(parts):
    classes = np.flatnonzero(table == k)
    real = half_a[np.isin(labels[half_a], classes)]
    reference = fid.compute_statistics(bench.extractor, [(images[real], labels[real])], f"part {k}")
    wanted = classes[np.arange(num // parts) % len(classes)].astype(np.int32)
    x = sampler.sample(jax.random.key(seed), len(wanted), steps=1, labels=wanted)
    out.append(float(fid.compare(fid.compute_statistics(bench.extractor, [(x, wanted)], f"part {k}"),
                                 reference)["fid"]))
  return out


def main():
  args = parse()
  import numpy as np

  from configs import mnist_msd, mnist_msd_small
  from distill import api, benchmarking

  root = os.path.join(args.out, "msd_mnist")
  teacher = args.teacher
  if not teacher:
    config = mnist_msd.teacher()
    config.data.source = args.data
    api.train(config, os.path.join(root, "teacher"))
    teacher = api.export(os.path.join(root, "teacher"))
  objective = "reflow" if args.small else args.objective
  pairs = os.path.join(root, f"pairs_{args.num_pairs}")
  if objective in mnist_msd.PAIRED:
    api.make_pairs(pairs, args.num_pairs, teacher=teacher, seed=1, steps=20)
  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  seeds = range(args.sample_seeds)
  summary = {}
  teacher_sampler = api.load(teacher)
  for solver, steps in benchmarking.parse_teacher_rows(args.teacher_steps):
    rows = [bench.row("teacher", teacher_sampler, steps, os.path.join(root, "teacher_plots"), solver, seed=s)
            for s in seeds]
    summary[f"teacher, {solver or 'euler'} {steps} steps"] = {"rows": rows}
  ks = [int(v) for v in args.ks.split(",")]
  classes = teacher_sampler.num_classes
  table = [c // (classes // max(ks)) for c in range(classes)]  # the largest K's blocks
  for k in ks:
    shared = tuple(args.shared.split(",")) if args.shared and k > 1 else ()
    tag = f"{objective}{'_small' if args.small else ''}_k{k}" + "".join(f"_shared_{g}" for g in shared)
    config = mnist_msd.student(objective, k)
    config.multi_student.shared = shared
    config.multi_student.layout = args.layout or config.multi_student.layout
    if args.small:
      tsm = mnist_msd_small.tsm(k)
      tsm.multi_student.layout = config.multi_student.layout
      tsm.data.source, tsm.eval.reference, tsm.teacher.bundle = args.data, args.data, teacher
      if args.tsm_steps:
        tsm.train.num_steps = args.tsm_steps
        tsm.optim.decay_steps = args.tsm_steps if tsm.optim.decay_steps else 0
      api.train(tsm, os.path.join(root, f"tsm_k{k}"))
      config.model.channels = mnist_msd_small.SMALL_CHANNELS
      config.objective.init = api.export(os.path.join(root, f"tsm_k{k}"))
    if args.steps:
      config.train.num_steps = args.steps
      config.optim.decay_steps = args.steps if config.optim.decay_steps else 0
    config.data.source = f"pairs:{pairs}" if objective in mnist_msd.PAIRED else args.data
    config.eval.reference, config.teacher.bundle = args.data, teacher
    workdir = os.path.join(root, tag)
    api.train(config, workdir)
    student = api.load(api.export(workdir))
    name = f"{objective}{' (4x smaller, TSM)' if args.small else ''}, K = {k}"
    name += f" (shared {', '.join(shared)})" if shared else ""
    rows = [bench.row(name, student, 1, os.path.join(root, f"{tag}_plots"), seed=s) for s in seeds]
    summary[name] = {"rows": rows, "partition_fid": partition_fid(bench, student, table, args.num),
                     "samples_per_s": benchmarking.sampling_rate(student, 1, args.rate_num)}

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine), "", bench.floor_line(args.classifier),
           f"Mean +- sd over {args.sample_seeds} sample sets; students at their last step, same batch and steps; "
           f"per-partition FID: {args.num // max(ks)} samples per part of the K = {max(ks)} blocks against that "
           "part of half A, one value per part; samples/s of a mixed-label batch.", "",
           "| model | NFE | FID | precision | recall | per-partition FID | samples/s |",
           "|---|---|---|---|---|---|---|"]
  for name, s in summary.items():
    stats = {key: (np.mean([r[key] for r in s["rows"]]), np.std([r[key] for r in s["rows"]], ddof=1)
                   if len(s["rows"]) > 1 else 0.0) for key in ("fid", "precision", "recall")}
    parts = ", ".join(f"{v:.1f}" for v in s["partition_fid"]) if "partition_fid" in s else "-"
    rate = f"{s['samples_per_s']:.0f}" if "samples_per_s" in s else "-"
    lines.append(f"| {name} | {s['rows'][0]['nfe']} | {stats['fid'][0]:.2f} +- {stats['fid'][1]:.2f} | "
                 f"{stats['precision'][0]:.3f} +- {stats['precision'][1]:.3f} | "
                 f"{stats['recall'][0]:.3f} +- {stats['recall'][1]:.3f} | {parts} | {rate} |")
  benchmarking.write_report(args.out, "msd_mnist", {"machine": machine, "summary": summary}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

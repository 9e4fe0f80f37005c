"""Multi-student distillation on a labelled 2-D mixture: K = 1, 2, 4 one-step students at matched compute.

  python scripts/benchmark_msd_2d.py --out bench_out [--data toyset:8gaussians] [--ks 1,2,4] [--train_seeds 0,1,2]

The class-conditional teacher of configs/toy2d_msd.py is trained once and makes 50k pairs once; then, for every K
and training seed, the distill stage of configs/toy2d_msd.py (reflow one-step distillation, each student from the
teacher's weights, trained on its block of classes) with the same batch (512 rows split between the students) and
steps, so every K sees the same images for the same number of updates. Each student set is scored at its last step
on --sample_seeds sets of --num routed samples (balanced labels): energy distance to fresh data (with the
data-vs-data floor) and the per-class energy (samples of class c against data of class c). Reported: mean and
standard deviation over training seeds of the per-run mean over sample sets; the 100-step teacher alongside; and
the sampling rate of each K's routed mixed-label batch (training seed 0's bundle, --rate_num samples).
Runs resume (OUT/msd_2d/...). Writes OUT/msd_2d.json and .md and appends to docs/results/multi_student.md.
"""

from __future__ import annotations

import argparse
import os


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--data", default="toyset:8gaussians", help="a labelled 2-D source (toyset:... or npz:...)")
  p.add_argument("--ks", default="1,2,4")
  p.add_argument("--train_seeds", default="0,1,2")
  p.add_argument("--sample_seeds", type=int, default=3)
  p.add_argument("--num", type=int, default=8000, help="samples per evaluation set")
  p.add_argument("--steps", type=int, default=0, help="distillation steps (0: the config's)")
  p.add_argument("--rate_num", type=int, default=20_000, help="batch of the sampling-rate measurement")
  p.add_argument("--width", type=int, default=0,
                 help="MLP width of teacher and students (0: the config's 256); small widths make capacity matter")
  benchmarking.add_results_flag(p, "multi_student")
  return p.parse_args()


def scores(sampler, source, num: int, steps: int, seed: int) -> dict:
  """Energy distance of `num` routed samples (balanced labels) to fresh data, its floor, and the mean over classes of
  the per-class energy (samples of class c against fresh data of class c)."""
  import jax
  import numpy as np

  from distill.evaluation.distances import energy_distance
  from samplers.generator import default_labels

  labels = default_labels(np.arange(num), sampler.num_classes)
  x = sampler.sample(jax.random.key(seed), num, steps=steps, labels=labels)
  fresh_a, fresh_b = source.sample(num, seed=1000 + seed), source.sample(num, seed=2000 + seed)
  per_class = [energy_distance(x[labels == c], fresh_a["x"][fresh_a["label"] == c])
               for c in range(sampler.num_classes)]
  return {"energy": energy_distance(x, fresh_a["x"]), "energy_floor": energy_distance(fresh_b["x"], fresh_a["x"]),
          "class_energy": float(np.mean(per_class)), "class_energy_each": [float(e) for e in per_class]}


def main():
  args = parse()
  import numpy as np

  from configs import toy2d_msd
  from distill import api, benchmarking, data as data_lib

  root = os.path.join(args.out, "msd_2d" + (f"_width{args.width}" if args.width else ""))
  sized = lambda c: c.model.update(width=args.width) or c if args.width else c
  teacher_config = sized(toy2d_msd.teacher())
  teacher_config.data.source = args.data
  teacher_dir = os.path.join(root, "teacher")
  api.train(teacher_config, teacher_dir)
  teacher_bundle = os.path.join(teacher_dir, "export")
  if not os.path.exists(teacher_bundle):
    api.export(teacher_dir)
  pairs = os.path.join(root, "pairs")
  api.make_pairs(pairs, 50_000, teacher=teacher_bundle, seed=1)
  source = data_lib.make_source(args.data, 0)
  sample_seeds = range(args.sample_seeds)

  def scored(sampler, steps):
    rows = [scores(sampler, source, args.num, steps, s) for s in sample_seeds]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("energy", "energy_floor", "class_energy")}

  teacher = scored(api.load(teacher_bundle), 100)
  runs = {}
  for k in (int(v) for v in args.ks.split(",")):
    for seed in (int(v) for v in args.train_seeds.split(",")):
      config = sized(toy2d_msd.student(args.steps) if args.steps else toy2d_msd.student())
      config.multi_student.k, config.seed = k, seed
      config.data.source, config.eval.reference = f"pairs:{pairs}", args.data
      config.teacher.bundle = teacher_bundle
      workdir = os.path.join(root, f"k{k}_seed{seed}")
      api.train(config, workdir)
      bundle = api.load(api.export(workdir))
      rate = {"samples_per_s": benchmarking.sampling_rate(bundle, 1, args.rate_num)} if not runs.get(k) else {}
      runs.setdefault(k, []).append({"seed": seed, **scored(bundle, 1), **rate})

  summary = {}
  for k, rows in runs.items():
    summary[k] = {key: {"mean": float(np.mean([r[key] for r in rows])),
                        "sd": float(np.std([r[key] for r in rows], ddof=1)) if len(rows) > 1 else 0.0}
                  for key in ("energy", "class_energy")}
  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine) + f". Data {args.data}; MLP width {args.width or 256}; one-step "
           f"students (reflow one-step distillation "
           f"from the teacher's 50k pairs), batch 512 split between the K students, same steps; energy distance over "
           f"{args.sample_seeds} sets of {args.num} routed samples, mean +- sd over training seeds "
           f"{args.train_seeds}; students at their last step.", "",
           "| model | NFE | energy | per-class energy | energy floor | samples/s (mixed labels) |",
           "|---|---|---|---|---|---|",
           f"| teacher, Euler 100 steps | 100 | {teacher['energy']:.4g} | {teacher['class_energy']:.4g} | "
           f"{teacher['energy_floor']:.4g} | - |"]
  for k, s in summary.items():
    lines.append(f"| K = {k} students | 1 | {s['energy']['mean']:.4g} +- {s['energy']['sd']:.2g} | "
                 f"{s['class_energy']['mean']:.4g} +- {s['class_energy']['sd']:.2g} | {teacher['energy_floor']:.4g} | "
                 f"{runs[k][0]['samples_per_s']:.0f} |")
  benchmarking.write_report(args.out, "msd_2d", {"machine": machine, "teacher": teacher, "runs": runs,
                                                 "summary": summary}, lines, results=args.results)


if __name__ == "__main__":
  main()

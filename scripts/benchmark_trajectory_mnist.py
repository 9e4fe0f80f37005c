"""One table of the trajectory baselines on MNIST: progressive distillation, consistency distillation and training,
BOOT and AutoDiffusion against their teachers (the flow teacher at --teacher_steps, the EDM teacher at its own Heun
grid), with FID in a feature classifier's space.

  python scripts/benchmark_trajectory_mnist.py --out bench_out --classifier runs/mnist_classifier \
      [--teacher_workdir runs/mnist_ui/teacher] [--methods teacher,autodiffusion,progressive,consistency,ict,boot]

Teachers: the flow-matching teacher (configs/mnist_teacher.py; --teacher_workdir reuses a finished one, e.g. the
teacher stage of a score-distillation pipeline) for progressive distillation (configs/mnist_progressive.py, rounds
64 -> 1) and AutoDiffusion (2- and 4-step grids scored by classifier FID against the data, 500 samples per
candidate); the EDM teacher (configs/mnist_edm_teacher.py, trained here) for consistency distillation / iCT
(configs/mnist_consistency.py) and BOOT (configs/mnist_boot.py). Every method runs its config's default budget.
Quality: classifier FID of --num samples against half A of the data (the data-vs-data floor: half B), mean +- sd over
--sample_seeds sample sets. Cost and throughput as in scripts/benchmark_trajectory_2d.py (training seconds over the
flow teacher's seconds per step; samples/s at batch --rate_num). Runs resume (<out>/trajectory_mnist/<method>, rows
cached in <out>/classifier_fid_rows.json); writes <out>/trajectory_mnist.json and .md and appends to
docs/results/trajectory.md.
"""

from __future__ import annotations

import argparse
import os

METHODS = ("teacher", "autodiffusion", "progressive", "consistency", "ict", "boot")


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  benchmarking.add_classifier_fid_flags(p, teacher_steps="50,4,2,1")
  p.add_argument("--teacher_workdir", default="", help="a finished flow-matching teacher's workdir to reuse")
  p.add_argument("--sample_seeds", type=int, default=3, help="sample sets per row")
  p.add_argument("--methods", default=",".join(METHODS))
  benchmarking.add_results_flag(p, "trajectory")
  return p.parse_args()


def main():
  args = parse()
  import numpy as np

  from configs import mnist_boot, mnist_consistency, mnist_edm_teacher, mnist_progressive, mnist_teacher
  from distill import api, benchmarking

  methods = args.methods.split(",")
  root = os.path.join(args.out, "trajectory_mnist")
  bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                          os.path.join(args.out, "classifier_fid_rows.json"))
  flow_dir = args.teacher_workdir or os.path.join(root, "teacher")
  edm_dir = os.path.join(root, "edm_teacher")
  trained_here = [(mnist_edm_teacher, edm_dir)] + ([] if args.teacher_workdir else [(mnist_teacher, flow_dir)])
  for module, workdir in trained_here:
    config = module.get_config()
    config.data.source = args.data
    api.train(config, workdir)
    if not os.path.exists(os.path.join(workdir, "export")):
      api.export(workdir)
  teacher_step = benchmarking.stage_step_seconds(flow_dir)
  rows = []

  def add(name: str, sampler, steps_list, cost_seconds: float, solver: str | None = None):
    for steps in steps_list:
      sets = [bench.row(name, sampler, steps, os.path.join(root, "plots", f"{name}_{steps}"), solver, seed)
              for seed in range(args.sample_seeds)]
      fids = np.array([r["fid"] for r in sets])
      rows.append(dict(sets[0], fid=float(fids.mean()), fid_std=float(fids.std(ddof=1)) if len(fids) > 1 else 0.0,
                       fid_per_set=fids.tolist(), cost=cost_seconds / teacher_step,
                       samples_per_sec=benchmarking.sampling_rate(sampler, steps, args.rate_num)))

  def trained(module, name: str, teacher_dir: str, mode: str = "") -> str:
    config = module.get_config()
    config.data.source, config.teacher.workdir = args.data, teacher_dir
    if mode:
      config.objective.mode = mode
    workdir = os.path.join(root, name)
    api.train(config, workdir)
    return workdir

  flow_teacher = api.load(os.path.join(flow_dir, "export"))
  if "teacher" in methods:
    for solver, steps in benchmarking.parse_teacher_rows(args.teacher_steps):
      add("teacher", flow_teacher, (steps,), 0.0, solver)
    edm_teacher = api.load(os.path.join(edm_dir, "export"))  # the teacher of consistency models and BOOT
    add("EDM teacher", edm_teacher, (edm_teacher.default_steps,), 0.0)
  if "autodiffusion" in methods:
    for k in (2, 4):
      bundle = os.path.join(root, f"autodiffusion{k}")
      if not os.path.exists(os.path.join(bundle, "sampler.json")):
        api.autodiffusion(os.path.join(flow_dir, "export"), k, bundle + ".json", bundle, num=500, reference=args.data,
                          features=f"classifier:{args.classifier}", population=20, epochs=5)
      add(f"AutoDiffusion grid ({k} steps)", api.load(bundle), (k,), float("nan"))
  if "progressive" in methods:
    import json

    workdir = trained(mnist_progressive, "progressive", flow_dir)
    records = json.load(open(os.path.join(workdir, "pipeline.json")))
    cost = 0.0
    for n in (32, 16, 8, 4, 2, 1):
      cost += records[f"pd{n}"]["steps"] * benchmarking.stage_step_seconds(records[f"pd{n}"]["workdir"])
      if n in (4, 2, 1):
        add(f"progressive (round to {n})", api.load(records[f"pd{n}"]["bundle"]), (n,), cost)
  for method, module, mode, steps in (("consistency", mnist_consistency, "", (1, 2, 4)),
                                      ("ict", mnist_consistency, "training", (1, 2, 4)),
                                      ("boot", mnist_boot, "", (1,))):
    if method in methods:
      workdir = trained(module, method, edm_dir, mode)
      label = {"consistency": "consistency distillation", "ict": "consistency training (iCT)", "boot": "BOOT"}[method]
      add(label, api.load(os.path.join(workdir, "distill", "export")), steps,
          benchmarking.pipeline_training_seconds(workdir))

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine) + ". " + bench.floor_line(args.classifier)
           + f" Mean +- sd over {args.sample_seeds} sample sets; every method at its config's default budget, judged "
           "at its last step; cost in flow-teacher training steps (AutoDiffusion: training-free, its search not "
           f"counted); samples/s at batch {args.rate_num}.", "",
           "| model | solver | steps | NFE | FID | precision | recall | cost (teacher steps) | samples/s |",
           "|---|---|---|---|---|---|---|---|---|"]
  lines += [f"| {r['model']} | {r['solver']} | {r['steps']} | {r['nfe']} | {r['fid']:.2f} +- {r['fid_std']:.2f} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['cost']:.0f} | {r['samples_per_sec']:.3g} |" for r in rows]
  benchmarking.write_report(args.out, "trajectory_mnist", {"machine": machine, "rows": rows,
                                                           "teacher_seconds_per_step": teacher_step}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

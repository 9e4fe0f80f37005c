"""Discriminator-pool distillation on 2-D toys against the reflow one-step student and the 100-step teacher.

  python scripts/benchmark_pool_2d.py --out bench_out [--toys moons,8gaussians,checkerboard] [--seeds 0,1,2]

Per toy: the teacher (configs/toy2d_teacher.py) trained once; its 50k pairs; the pure-pool one-step student of
configs/toy2d_nitro.py (judged at its last step, the exported checkpoint); the same student with the optional L2
regression to the paired teacher sample (regression weight 1, the pool's term at 0.3 x the regression's gradient
norm: NitroFusion / LADD's optional term); the reflow one-step student of
configs/toy2d_reflow.py (2-RF then one-step distillation) from the same teacher; that reflow student fine-tuned by
pool + L2 on its 2-RF pairs (configs/toy2d_nitro.py:finetune, variant pool_finetune, whose pipeline also yields the
reflow row). Energy distance and sliced W2 to
fresh data (n = --num) on each of the --seeds sample sets (mean and standard deviation), with the data-vs-data
floor, plus the wall-clock cost of each pipeline. Runs resume (bench_out/pool_2d/<toy>/...). Writes
bench_out/pool_2d.json and .md and appends the run to docs/results/adversarial.md.
"""

from __future__ import annotations

import argparse
import os


LABELS = {"pool": "pool", "reflow": "reflow", "pool_regression": "pool + L2 regression",
          "pool_finetune": "reflow, then pool + L2 fine-tune"}


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--toys", default="moons,8gaussians,checkerboard")
  p.add_argument("--num", type=int, default=20_000, help="samples per evaluation set")
  p.add_argument("--seeds", default="0,1,2", help="sample sets (evaluation seeds)")
  p.add_argument("--pool_steps", type=int, default=0, help="pool distillation steps (0: the config's)")
  p.add_argument("--variants", default="pool,reflow,pool_regression",
                 help="students to train: pool, reflow, pool_regression (pool + L2 regression), pool_finetune (the "
                      "reflow student fine-tuned by pool + L2, configs/toy2d_nitro.py:finetune; its pipeline's "
                      "reflow student is the reflow row when reflow is not listed)")
  benchmarking.add_results_flag(p, "adversarial")
  return p.parse_args()


def main():
  args = parse()
  from configs import toy2d_nitro, toy2d_reflow, toy2d_teacher
  from distill import api, benchmarking

  seeds = [int(s) for s in args.seeds.split(",")]
  results = {}
  for toy in args.toys.split(","):
    source, root = f"toy:{toy}", os.path.join(args.out, "pool_2d", toy)
    teacher_config = toy2d_teacher.get_config()
    teacher_config.data.source = source
    teacher_dir = os.path.join(root, "teacher")
    api.train(teacher_config, teacher_dir)
    if not os.path.exists(os.path.join(teacher_dir, "export")):
      api.export(teacher_dir)
    pipelines = {}
    modules = {"pool": toy2d_nitro, "reflow": toy2d_reflow, "pool_regression": toy2d_nitro}
    for name in args.variants.split(","):
      config = toy2d_nitro.get_config("finetune") if name == "pool_finetune" else modules[name].get_config()
      config.data.source, config.teacher.workdir = source, teacher_dir
      if name.startswith("pool") and args.pool_steps:
        stage = config.stages.pool.config if name == "pool_finetune" else config.stages.distill.config
        stage.train.num_steps = stage.optim.decay_steps = args.pool_steps
      if name == "pool_regression":
        config.objective.regression_weight = 1.0
        config.objective.pool.update(weight_mode="grad_match", weight=0.3)
      result = api.train(config, os.path.join(root, name))
      records = result["records"]
      seconds = sum(r.get("seconds", 0.0) for r in records.values())  # as recorded when each stage ran
      pipelines[name] = (api.load(result["bundle"]), seconds)
      if name == "pool_finetune" and "reflow" not in pipelines:  # the student it fine-tuned is the reflow row
        pipelines["reflow"] = (api.load(records["distill"]["bundle"]), seconds - records["pool"].get("seconds", 0.0))
    teacher = api.load(os.path.join(teacher_dir, "export"))
    scores = lambda sampler, steps: benchmarking.energy_over_sets(sampler, source, args.num, steps, seeds)
    rows = {"teacher": dict(model="teacher", **scores(teacher, 100), seconds=float("nan"))}
    for name, (sampler, seconds) in pipelines.items():
      rows[name] = dict(model=f"{LABELS[name]} one-step student", **scores(sampler, 1),
                        seconds=seconds)
    pairs = [(name, ref) for name in ("pool", "pool_regression", "pool_finetune") for ref in ("reflow", "teacher")
             if name in rows and ref in rows]
    ratios = {f"{name}_vs_{ref}": rows[name]["energy"] / rows[ref]["energy"] for name, ref in pairs}
    per_set = {f"{name}_vs_{ref}": [a / b for a, b in zip(rows[name]["energy_per_set"], rows[ref]["energy_per_set"])]
               for name, ref in pairs}
    results[toy] = {"rows": list(rows.values()), **ratios, "per_set": per_set}

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine) + f". Energy distance and SW2 to fresh data, n = {args.num}, mean +- sd "
           f"over sample sets {seeds}; students at their last step; seconds: the wall clock of each student's "
           "pipeline stages (pairs included) as recorded when they ran, the shared teacher excluded.", ""]
  for toy, r in results.items():
    lines += [f"### toy:{toy}", "", "| model | steps | NFE | energy | energy floor | SW2 | SW2 floor | seconds |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['model']} | {row['steps']} | {row['nfe']} | {row['energy']:.4g} +- {row['energy_std']:.2g} | "
              f"{row['energy_floor']:.4g} | {row['sw2']:.4g} +- {row['sw2_std']:.2g} | {row['sw2_floor']:.4g} | "
              f"{'-' if row['seconds'] != row['seconds'] else round(row['seconds'])} |" for row in r["rows"]]
    lines += ["", "Energy ratios (of the means; per sample set, same noise and fresh data): " + "; ".join(
        f"{k.replace('_vs_', ' / ')} {v:.2f}x ({', '.join(f'{x:.3f}' for x in r['per_set'][k])})"
        for k, v in r.items() if k not in ("rows", "per_set")) + ".", ""]
  benchmarking.write_report(args.out, "pool_2d", {"machine": machine, "results": results}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

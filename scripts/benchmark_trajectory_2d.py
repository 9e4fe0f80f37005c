"""One table of the toolkit's few-step methods on 2-D toys: trajectory baselines next to reflow and score distillation.

  python scripts/benchmark_trajectory_2d.py --out bench_out [--toys moons] [--sets 0,1,2] [--num 20000]
      [--methods teacher,autodiffusion,progressive,consistency,ict,boot,reflow,sid]

Per toy, from two teachers trained once (the flow-matching teacher of configs/toy2d_teacher.py, reused from
<teacher_root>/<toy>/teacher, and the EDM teacher of configs/toy2d_edm_teacher.py): the teacher's Euler sampler at
100 / 4 / 2 / 1 steps; AutoDiffusion's searched 2- and 4-step grids of the flow teacher (data-free: scored against its
own 100-step samples); progressive distillation (configs/toy2d_progressive.py, rounds 64 -> 1, the 4-, 2- and 1-step
rounds' students); consistency distillation and iCT (configs/toy2d_consistency.py, mode distillation / training) at
1, 2, 4 steps; BOOT (configs/toy2d_boot.py); the reflow one-step student (configs/toy2d_reflow.py) and SiD
(configs/toy2d_sid.py, which exports its best checkpoint by in-training energy, not its last). Every method runs
its config's default budget. Quality: energy distance and SW2 to fresh data, n = --num, mean +- sd over the --sets
sample sets. Training cost: the sum over a method's stages (pairs included) of steps x seconds per step (timed on
each stage's config after compilation, evaluation excluded), in units of the flow teacher's seconds per training
step; AutoDiffusion's is its search's wall clock in the same units.
Throughput: samples per second at that step count (20k samples, after a warm-up; measured by every run, never
cached). Runs resume
(<out>/trajectory_2d/<toy>/<method>, scored rows cached in <out>/trajectory_2d/<toy>/rows.json); writes
<out>/trajectory_2d.json and .md and appends to docs/results/trajectory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

METHODS = ("teacher", "autodiffusion", "progressive", "consistency", "ict", "boot", "reflow", "sid")


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--toys", default="moons")
  p.add_argument("--sets", default="0,1,2", help="sample sets (evaluation seeds)")
  p.add_argument("--num", type=int, default=20_000, help="points per sample set")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--teacher_root", default="bench_out/pool_2d", help="<root>/<toy>/teacher is reused when present")
  benchmarking.add_results_flag(p, "trajectory")
  return p.parse_args()


def trained(config_module, workdir: str, source: str, teacher_workdir: str, variant: str = ""):
  """Run a pipeline config (its teacher replaced by `teacher_workdir`) and return its workdir."""
  from distill import api

  config = config_module.get_config()
  config.data.source, config.teacher.workdir = source, teacher_workdir
  if variant == "training":
    config.objective.mode = "training"
  api.train(config, workdir)
  return workdir


def main():
  args = parse()
  import jax

  from configs import (toy2d_boot, toy2d_consistency, toy2d_edm_teacher, toy2d_progressive, toy2d_reflow, toy2d_sid,
                       toy2d_teacher)
  from distill import api, benchmarking

  sets, methods = [int(s) for s in args.sets.split(",")], args.methods.split(",")
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise SystemExit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
  results = {}
  for toy in args.toys.split(","):
    source, root = f"toy:{toy}", os.path.join(args.out, "trajectory_2d", toy)
    flow_dir = os.path.join(args.teacher_root, toy, "teacher")
    edm_dir = os.path.join(root, "edm_teacher")
    for config_module, workdir in ((toy2d_teacher, flow_dir), (toy2d_edm_teacher, edm_dir)):
      config = config_module.get_config()
      config.data.source = source
      api.train(config, workdir)
      if not os.path.exists(os.path.join(workdir, "export")):
        api.export(workdir)
    teacher_step = benchmarking.stage_step_seconds(flow_dir)
    flow_teacher = api.load(os.path.join(flow_dir, "export"))
    rows = []

    cache_path = os.path.join(root, "rows.json")  # scored rows, so that a resumed run does not score them again
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}

    def add(method: str, sampler, steps_list, cost_seconds: float):
      for steps in steps_list:
        key = f"{method}|{steps}|{args.num}|{args.sets}|{sampler.meta['checksum']}"
        if key not in cache:
          cache[key] = benchmarking.energy_over_sets(sampler, source, args.num, steps, sets)
          json.dump(cache, open(cache_path, "w"))
        score = {k: v for k, v in cache[key].items() if k != "samples_per_sec"}  # rates are measured afresh
        rows.append(dict(method=method, **score, cost=cost_seconds / teacher_step,
                         samples_per_sec=benchmarking.sampling_rate(sampler, steps)))
        print(f"{toy} {method} {steps} steps: energy {score['energy']:.4g} +- {score['energy_std']:.2g}", flush=True)

    if "teacher" in methods:
      add("teacher (Euler)", flow_teacher, (100, 4, 2, 1), 0.0)
    if "autodiffusion" in methods:
      for k in (2, 4):
        grid_json, bundle = os.path.join(root, f"autodiffusion{k}.json"), os.path.join(root, f"autodiffusion{k}")
        if not os.path.exists(os.path.join(bundle, "sampler.json")):
          start = time.time()
          record = api.autodiffusion(os.path.join(flow_dir, "export"), k, grid_json, bundle, num=4000)
          json.dump({"seconds": time.time() - start}, open(grid_json + ".time", "w"))
        seconds = json.load(open(grid_json + ".time"))["seconds"]
        add(f"AutoDiffusion grid (teacher, {k} steps)", api.load(bundle), (k,), seconds)
    if "progressive" in methods:
      workdir = trained(toy2d_progressive, os.path.join(root, "progressive"), source, flow_dir)
      records = json.load(open(os.path.join(workdir, "pipeline.json")))
      cost = 0.0
      for n in (32, 16, 8, 4, 2, 1):
        record = records[f"pd{n}"]
        cost += record["steps"] * benchmarking.stage_step_seconds(record["workdir"])
        if n in (4, 2, 1):  # each round's cost includes the rounds before it
          add(f"progressive distillation (round to {n})", api.load(record["bundle"]), (n,), cost)
    if "consistency" in methods or "ict" in methods:
      edm_teacher = api.load(os.path.join(edm_dir, "export"))
      if "teacher" in methods:
        add("EDM teacher (Heun)", edm_teacher, (edm_teacher.default_steps,), 0.0)
    for method, module, variant, steps in (("consistency", toy2d_consistency, "", (1, 2, 4)),
                                           ("ict", toy2d_consistency, "training", (1, 2, 4)),
                                           ("boot", toy2d_boot, "", (1,))):
      if method in methods:
        workdir = trained(module, os.path.join(root, method), source, edm_dir, variant)
        label = {"consistency": "consistency distillation", "ict": "consistency training (iCT)", "boot": "BOOT"}[method]
        add(label, api.load(os.path.join(workdir, "distill", "export")), steps,
            benchmarking.pipeline_training_seconds(workdir))
    for method, module in (("reflow", toy2d_reflow), ("sid", toy2d_sid)):
      if method in methods:
        workdir = trained(module, os.path.join(root, method), source, flow_dir)
        label = {"reflow": "reflow (2-RF, one-step distillation)",
                 "sid": "SiD (best checkpoint by in-training energy)"}[method]
        add(label, api.load(os.path.join(workdir, "distill", "export")), (1,),
            benchmarking.pipeline_training_seconds(workdir))
    results[toy] = {"rows": rows, "teacher_seconds_per_step": teacher_step}

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine) + f". Energy distance and SW2 to fresh data, n = {args.num}, mean +- sd "
           f"over sample sets {sets}; every method at its config's default budget, judged at its exported checkpoint "
           "(the last step; SiD: its best by in-training energy). Cost: training seconds (steps x timed seconds per "
           "step, pairs' wall clock included; "
           "AutoDiffusion: its search's wall clock) over the flow teacher's seconds per training step.", ""]
  for toy, r in results.items():
    lines += [f"### toy:{toy} (teacher step {1e3 * r['teacher_seconds_per_step']:.2f} ms)", "",
              "| method | steps | NFE | energy | energy floor | SW2 | cost (teacher steps) | samples/s |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['method']} | {row['steps']} | {row['nfe']} | {row['energy']:.4g} +- {row['energy_std']:.2g} | "
              f"{row['energy_floor']:.4g} | {row['sw2']:.4g} +- {row['sw2_std']:.2g} | {row['cost']:.0f} | "
              f"{row['samples_per_sec']:.3g} |" for row in r["rows"]]
    lines.append("")
  benchmarking.write_report(args.out, "trajectory_2d", {"machine": machine, "results": results,
                                                        "devices": jax.device_count()}, lines, results=args.results)


if __name__ == "__main__":
  main()

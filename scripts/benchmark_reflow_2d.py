"""Reflow on 2-D toys: teacher -> pairs -> 2-RF -> one-step distillation (configs/toy2d_reflow.py) per toy.

  python scripts/benchmark_reflow_2d.py --out bench_out [--toys 8gaussians,moons,checkerboard]

For each toy: energy distance and sliced W2 against fresh data (n = 4000) for the teacher at 1, 2, 4, 8, 100 Euler
steps, the 2-rectified flow at 1 step and the one-step student, next to the data-vs-data floor; the straightness S
of the teacher and of the 2-RF (100-step Euler paths, mean squared deviation from the straight line per coordinate);
sampling throughput of the one-step student versus the teacher at 100 steps. Writes bench_out/reflow_2d.json and
.md. Runs resume (each toy's pipeline lives in bench_out/reflow_2d/<toy>).
"""

from __future__ import annotations

import argparse
import os
import time


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--toys", default="8gaussians,moons,checkerboard")
  p.add_argument("--num", type=int, default=4000)
  benchmarking.add_results_flag(p, "reflow")
  return p.parse_args()


def straightness_of(sampler, num: int) -> float:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from distill.evaluation.straightness import straightness

  z = jax.random.normal(jax.random.key(7), (num,) + sampler.shape)
  velocity = lambda x, t: sampler.network.velocity(sampler.params, x, jnp.full(x.shape[:1], t))
  return float(straightness(velocity, z, np.linspace(1e-3, 1.0, 101))[0])


def main():
  args = parse()
  import samplers
  from configs import toy2d_reflow
  from distill import api, benchmarking, pipeline
  from distill.benchmarking import sampling_rate

  results = {}
  for toy in args.toys.split(","):
    source = f"toy:{toy}"
    workdir = os.path.join(args.out, "reflow_2d", toy)
    config = toy2d_reflow.get_config()
    config.data.source = source
    start = time.time()
    records = pipeline.run_pipeline(config, workdir)
    models = {name: samplers.load(records[name]["bundle"]) for name in ("teacher", "reflow", "distill")}
    rows = [dict(model="teacher", **r) for r in api.evaluate(models["teacher"], source, args.num,
                                                                       (1, 2, 4, 8, 100))]
    rows += [dict(model="2-RF", **api.evaluate(models["reflow"], source, args.num, [1])[0]),
             dict(model="one-step student", **api.evaluate(models["distill"], source, args.num, [1])[0])]
    teacher_rate = sampling_rate(models["teacher"], 100)
    student_rate = sampling_rate(models["distill"], 1)
    results[toy] = {
        "rows": rows, "pipeline_seconds": round(time.time() - start, 1),
        "straightness": {"teacher": straightness_of(models["teacher"], args.num),
                         "2-RF": straightness_of(models["reflow"], args.num)},
        "student_vs_teacher100_energy_ratio": rows[-1]["energy"] / rows[4]["energy"],
        "samples_per_s": {"teacher_100_steps": teacher_rate, "student_1_step": student_rate},
        "speedup": student_rate / teacher_rate,
    }
  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine), ""]
  for toy, r in results.items():
    lines += [f"### toy:{toy}", "", "| model | steps | NFE | energy | energy floor | SW2 | SW2 floor |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['model']} | {row['steps']} | {row['nfe']} | {row['energy']:.4g} | {row['energy_floor']:.4g} | "
              f"{row['sw2']:.4g} | {row['sw2_floor']:.4g} |" for row in r["rows"]]
    lines += ["", f"Student energy / teacher-100-step energy: {r['student_vs_teacher100_energy_ratio']:.2f}x; "
              f"straightness S teacher {r['straightness']['teacher']:.4g} -> 2-RF {r['straightness']['2-RF']:.4g}; "
              f"one-step student {r['samples_per_s']['student_1_step']:.0f} samples/s vs teacher (100 steps) "
              f"{r['samples_per_s']['teacher_100_steps']:.0f} ({r['speedup']:.0f}x); pipeline "
              f"{r['pipeline_seconds']:.0f}s", ""]
  benchmarking.write_report(args.out, "reflow_2d", {"machine": machine, "results": results}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

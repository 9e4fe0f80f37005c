"""Score distillation on 2-D toys: one-step students by SiD and Uni-Instruct divergences against their teacher.

  python scripts/benchmark_score_2d.py --out bench_out [--toys moons,8gaussians]
      [--methods sid,sida,rkl,fkl,jeffreys,js] [--steps 4000] [--teacher_root bench_out/reflow_2d] [--seeds 0,1,2]
      [--num 65536]

Per toy: the flow-matching teacher (reused from <teacher_root>/<toy>/teacher when it exists, else trained by the
pipeline) at 1 and 100 Euler steps, and each method's one-step student (configs/toy2d_sid.py, configs/toy2d_sida.py,
or configs/toy2d_uni_instruct.py with that divergence; the exported student is the checkpoint with the lowest energy
distance to held-out points, measured every 250 steps), scored by energy distance and sliced W2 against fresh data
(n = --num, default 65536; the energy of 2-D clouds that large uses the exact projection formula) next to the
data-vs-data floor. At n = 4000 one draw of samples and fresh data moved the distances by a factor of two; at
n = 262144 a student near 3e-4 still spreads by about 5e-5 (standard deviation over 8 seeds), as the estimator's
sqrt(distance / n) scaling predicts. So every model is scored with the same --seeds (sample noise and fresh data)
and the table gives the mean over seeds; the ratio to the teacher is the mean of the per-seed ratios.
Cost: seconds per training step of each method (fake score + discriminator + generator update) over seconds per
teacher training step, timed back to back in this process. Writes <out>/score_2d.json and .md; each run lives in
<out>/score_2d/<toy>/<method> and resumes.
"""

from __future__ import annotations

import argparse
import os
import time


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--toys", default="moons")
  p.add_argument("--methods", default="sid,sida,rkl,fkl,jeffreys,js")
  p.add_argument("--steps", type=int, default=4000)
  p.add_argument("--seeds", default="0,1,2", help="evaluation seeds (sample noise and fresh data); means reported")
  p.add_argument("--num", type=int, default=65536)
  p.add_argument("--teacher_root", default="bench_out/reflow_2d")
  p.add_argument("--timing_steps", type=int, default=30)
  p.add_argument("--divergence_start", type=int, default=300,
                 help="Uni-Instruct steps of SiD(alpha=1) warm-up before the f-divergence (must be < --steps)")
  benchmarking.add_results_flag(p, "score_distillation")
  return p.parse_args()


def method_config(method: str, toy: str, steps: int, teacher_workdir: str, divergence_start: int):
  from configs import toy2d_sid, toy2d_sida, toy2d_uni_instruct

  dedicated = {"sid": toy2d_sid, "sida": toy2d_sida}
  config = (dedicated.get(method) or toy2d_uni_instruct).get_config()
  if method not in dedicated:
    config.objective.divergence = method
    config.objective.divergence_start = divergence_start
  config.data.source = f"toy:{toy}"
  config.teacher.workdir = teacher_workdir
  config.stages.distill.config.train.num_steps = steps
  return config


def mean_over_seeds(sampler, source: str, num: int, steps: int, seeds: list[int]) -> dict:
  """Energy distance, SW2 and their floors at `steps`, averaged over evaluation seeds (per-seed energies kept)."""
  import numpy as np

  from distill import api

  rows = [api.evaluate(sampler, source, num, [steps], seed=seed)[0] for seed in seeds]
  keys = ("energy", "energy_floor", "sw2", "sw2_floor")
  return {**{k: float(np.mean([r[k] for r in rows])) for k in keys}, "nfe": rows[0]["nfe"],
          "per_seed_energy": [r["energy"] for r in rows]}


def seconds_per_step(config, num_steps: int) -> float:
  """Wall seconds per training step of a (stage) config after one compiled warm-up step."""
  import jax

  from distill import run, sharding

  r = run.build_run(config)
  state = r.trainer.init_state()
  teacher = r.trainer.teacher_params()
  batch = lambda step: sharding.global_batch(r.source.global_batch(step, config.data.batch_size), r.mesh)
  state, _ = r.trainer.step(state, teacher, batch(0))
  jax.block_until_ready(state)
  start = time.perf_counter()
  for step in range(1, num_steps + 1):
    state, _ = r.trainer.step(state, teacher, batch(step))
  jax.block_until_ready(state)
  return (time.perf_counter() - start) / num_steps


def main():
  args = parse()
  if args.divergence_start >= args.steps:
    raise SystemExit("--divergence_start must be below --steps, or every divergence is just its SiD warm-up")
  import numpy as np

  import samplers
  from distill import benchmarking, pipeline

  seeds = [int(x) for x in args.seeds.split(",")]
  results = {}
  for toy in args.toys.split(","):
    teacher_dir = os.path.join(args.teacher_root, toy, "teacher")
    rows, costs, records = [], {}, {}
    for method in args.methods.split(","):
      workdir = os.path.join(args.out, "score_2d", toy, method)
      config = method_config(method, toy, args.steps, teacher_dir if os.path.isdir(teacher_dir) else "",
                             args.divergence_start)
      records[method] = pipeline.run_pipeline(config, workdir)
      student = samplers.load(records[method]["distill"]["bundle"])
      rows.append(dict(model=method, steps=1, step_trained=student.meta["provenance"]["step"],
                       **mean_over_seeds(student, config.data.source, args.num, 1, seeds)))
      stage = pipeline.stage_training_config(config, config.stages.distill, workdir,
                                             {"teacher": records[method]["teacher"]["bundle"]})
      costs[method] = seconds_per_step(stage, args.timing_steps)
    teacher = samplers.load(records[method]["teacher"]["bundle"])
    teacher_rows = [dict(model="teacher", steps=k, **mean_over_seeds(teacher, f"toy:{toy}", args.num, k, seeds))
                    for k in (1, 100)]
    from configs import toy2d_teacher

    teacher_config = toy2d_teacher.get_config()
    teacher_config.data.source = f"toy:{toy}"
    teacher_step = seconds_per_step(teacher_config, args.timing_steps)
    reference = np.asarray(teacher_rows[1]["per_seed_energy"])
    results[toy] = {"teacher": teacher_rows, "students": rows, "teacher_step_seconds": teacher_step,
                    "step_seconds": costs, "cost_ratio": {m: c / teacher_step for m, c in costs.items()},
                    "energy_over_teacher100": {r["model"]: float(np.mean(np.asarray(r["per_seed_energy"]) / reference))
                                               for r in rows},
                    "energy_over_teacher100_per_seed": {r["model"]: list(np.asarray(r["per_seed_energy"]) / reference)
                                                        for r in rows},
                    "steps": args.steps, "seeds": seeds, "num": args.num}

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine), ""]
  for toy, r in results.items():
    lines += [f"### toy:{toy} (up to {r['steps']} distillation steps, batch 512; n = {r['num']}, means over seeds "
              f"{r['seeds']})", "",
              "| model | steps | checkpoint | energy | energy floor | SW2 | SW2 floor | energy / teacher-100 (per seed) "
              "| step cost / teacher step |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["teacher"]:
      ratio = row["energy"] / r["teacher"][1]["energy"]
      lines.append(f"| teacher | {row['steps']} | | {row['energy']:.4g} | {row['energy_floor']:.4g} | {row['sw2']:.4g} | "
                   f"{row['sw2_floor']:.4g} | {ratio:.2f} | 1 |")
    for row in r["students"]:
      m = row["model"]
      per_seed = ", ".join(f"{x:.2f}" for x in r["energy_over_teacher100_per_seed"][m])
      lines.append(f"| {m} | 1 | {row['step_trained']} | {row['energy']:.4g} | {row['energy_floor']:.4g} | "
                   f"{row['sw2']:.4g} | {row['sw2_floor']:.4g} | {r['energy_over_teacher100'][m]:.2f} ({per_seed}) | "
                   f"{r['cost_ratio'][m]:.1f}x |")
    lines.append("")
  benchmarking.write_report(args.out, "score_2d", {"machine": machine, "results": results}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

"""The README's first command: train a 2-D flow-matching teacher, export and evaluate it, then distil it into a
one-step student by reflow (pairs -> 2-rectified flow -> pairs -> one-step distillation) and compare the two."""

from __future__ import annotations

import os
import time

from configs import toy2d_reflow, toy2d_teacher
from distill import api
from distill.benchmarking import sampling_rate
from distill.pipeline import RECORD_FILE

STEP_COUNTS = (1, 2, 4, 8, 100)
NUM_EVAL = 4000


def reflow_config(teacher_workdir: str, data_source: str, num_pairs: int = 20_000, num_steps: int = 2000):
  """configs/toy2d_reflow.py on a finished teacher, with the quickstart's smaller budget."""
  config = toy2d_reflow.get_config()
  config.data.source = data_source
  config.teacher.workdir = teacher_workdir
  config.stages.pairs.num = config.stages.pairs_2rf.num = num_pairs
  for name in ("reflow", "distill"):
    stage = config.stages[name].config
    stage.train.update(num_steps=num_steps, eval_every=0)
    stage.optim.decay_steps = num_steps
  return config


def main(workdir: str, data_source: str) -> None:
  config = toy2d_teacher.get_config()
  config.data.source = data_source
  config.train.eval_every = 0
  print(f"[1/4] training a flow-matching MLP teacher on {data_source} ({config.train.num_steps} steps) in {workdir}")
  start = time.time()
  api.train(config, workdir)
  train_seconds = time.time() - start
  print("[2/4] exporting the EMA teacher")
  bundle = api.export(workdir)
  print(f"[3/4] sampling {NUM_EVAL} points at {', '.join(map(str, STEP_COUNTS))} Euler steps and comparing with "
        "fresh data")
  teacher = api.load(bundle)
  rows = api.evaluate(teacher, data_source, NUM_EVAL, STEP_COUNTS, plot_dir=os.path.join(workdir, "plots"))
  print()
  print(api.format_table(rows))
  print()
  best = rows[-1]
  print(f"teacher at {best['steps']} steps: energy distance {best['energy']:.4g} vs data-vs-data floor "
        f"{best['energy_floor']:.4g} ({best['energy'] / max(best['energy_floor'], 1e-12):.2f}x); "
        f"training took {train_seconds:.0f}s")

  reflow_dir = os.path.join(workdir, "reflow")
  print(f"\n[4/4] distilling the teacher into a one-step student by reflow in {reflow_dir}")
  reflow = reflow_config(workdir, data_source)
  start = time.time()
  records = api.train(reflow, reflow_dir)["records"]
  distill_seconds = time.time() - start
  comparison = [("teacher", teacher, 1), ("teacher", teacher, 100),
                ("2-rectified flow", api.load(records["reflow"]["bundle"]), 1),
                ("one-step student", api.load(records["distill"]["bundle"]), 1)]
  table = []
  for name, sampler, steps in comparison:
    row = api.evaluate(sampler, data_source, NUM_EVAL, [steps], plot_dir=os.path.join(reflow_dir, "plots",
                                                                                              name.replace(" ", "_")))[0]
    table.append({"model": name, "steps": steps, "nfe": row["nfe"], "energy": row["energy"],
                  "energy_floor": row["energy_floor"], "sw2": row["sw2"], "sw2_floor": row["sw2_floor"],
                  "samples_per_s": round(sampling_rate(sampler, steps))})
  print()
  print(api.format_table(table))
  student, reference = table[-1], table[1]
  print(f"\none-step student: energy distance {student['energy']:.4g} = "
        f"{student['energy'] / max(reference['energy'], 1e-12):.2f}x the 100-step teacher's, "
        f"{student['samples_per_s'] / max(reference['samples_per_s'], 1):.0f}x faster sampling; "
        f"distillation took {distill_seconds:.0f}s")
  print(f"plots: {os.path.join(workdir, 'plots')}/ and {os.path.join(reflow_dir, 'plots')}/ | teacher: {bundle} | "
        f"student: {records['distill']['bundle']} | stages: {os.path.join(reflow_dir, RECORD_FILE)}")

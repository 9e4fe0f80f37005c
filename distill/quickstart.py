"""The README's first command: train a 2-D flow-matching teacher, export it, sample and evaluate it, in minutes."""

from __future__ import annotations

import os
import time

from configs import toy2d_teacher
from distill import cli, run

STEP_COUNTS = (1, 2, 4, 8, 100)


def main(workdir: str, data_source: str) -> None:
  import samplers

  config = toy2d_teacher.get_config()
  config.data.source = data_source
  config.train.eval_every = 0
  print(f"[1/3] training a flow-matching MLP teacher on {data_source} ({config.train.num_steps} steps) in {workdir}")
  start = time.time()
  run.train(config, workdir)
  train_seconds = time.time() - start
  print(f"[2/3] exporting the EMA teacher")
  bundle = cli.export_workdir(workdir)
  print(f"[3/3] sampling 4000 points at {', '.join(map(str, STEP_COUNTS))} Euler steps and comparing with fresh data")
  rows = cli.evaluate_sampler(samplers.load(bundle), data_source, 4000, STEP_COUNTS,
                              plot_dir=os.path.join(workdir, "plots"))
  print()
  print(cli.format_table(rows))
  print()
  best = rows[-1]
  print(f"teacher at {best['steps']} steps: energy distance {best['energy']:.4g} vs data-vs-data floor "
        f"{best['energy_floor']:.4g} ({best['energy'] / max(best['energy_floor'], 1e-12):.2f}x); "
        f"training took {train_seconds:.0f}s")
  print(f"plots: {os.path.join(workdir, 'plots')}/samples_*steps.png | bundle: {bundle} | "
        f"metrics: {os.path.join(workdir, 'metrics.jsonl')}")

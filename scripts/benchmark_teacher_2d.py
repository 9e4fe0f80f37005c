"""2-D teacher quality: train configs/toy2d_teacher.py on several point clouds, then report energy distance and
sliced W2 to fresh data (n = 4000) at several sampler step counts, with the data-vs-data floor.

  python scripts/benchmark_teacher_2d.py --out bench_out [--data toy:moons,toy:8gaussians,npz:cloud.npz]

Besides the toys, it builds an arbitrary point cloud (a ring, a line and a blob of different densities) and trains
on it through the `npz:` source, as a user would. Writes bench_out/teacher_2d.json and bench_out/teacher_2d.md.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def arbitrary_cloud(path: str, n: int = 20000, seed: int = 0) -> str:
  """A (n, 2) float32 cloud under the key `points`: a ring, a segment and an anisotropic blob."""
  rng = np.random.default_rng(seed)
  k = n // 3
  angle = rng.uniform(0, 2 * np.pi, k)
  ring = np.stack([2.5 * np.cos(angle), 2.5 * np.sin(angle)], 1) + 0.08 * rng.standard_normal((k, 2))
  seg = np.stack([rng.uniform(-1.5, 1.5, k), 0.5 * rng.uniform(-1.5, 1.5, k) + 0.05 * rng.standard_normal(k)], 1)
  blob = rng.standard_normal((n - 2 * k, 2)) @ np.array([[0.3, 0.0], [0.2, 0.1]]) + np.array([0.0, -1.2])
  points = np.concatenate([ring, seg, blob]).astype(np.float32)
  np.savez(path, points=points[rng.permutation(len(points))])
  return path


def main():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--data", default="")
  p.add_argument("--steps", default="1,2,4,8,100")
  benchmarking.add_results_flag(p, "teachers")
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)

  import samplers
  from configs import toy2d_teacher
  from distill import api, run

  sources = args.data.split(",") if args.data else [
      "toy:8gaussians", "toy:moons", "toy:checkerboard", f"npz:{arbitrary_cloud(os.path.join(args.out, 'cloud.npz'))}"]
  step_counts = [int(s) for s in args.steps.split(",")]
  results = []
  for source in sources:
    workdir = os.path.join(args.out, "teacher_2d", source.replace(":", "_").replace("/", "_"))
    config = toy2d_teacher.get_config()
    config.data.source = source
    config.train.eval_every = 0
    start = time.time()
    run.train(config, workdir, overwrite=True)
    seconds = time.time() - start
    bundle = api.export(workdir)
    rows = api.evaluate(samplers.load(bundle), source, 4000, step_counts, plot_dir=os.path.join(workdir, "plots"))
    results.append({"source": source, "train_seconds": seconds, "rows": rows})

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine) + ". n = 4000 samples vs fresh data; energy = squared energy distance "
           "(V-statistic), floor = data vs data.", "",
           "| data | steps | NFE | energy | energy floor | energy / floor | SW2 | SW2 floor |",
           "|---|---|---|---|---|---|---|---|"]
  for res in results:
    for r in res["rows"]:
      lines.append(f"| {res['source']} | {r['steps']} | {r['nfe']} | {r['energy']:.5f} | {r['energy_floor']:.5f} | "
                   f"{r['energy'] / r['energy_floor']:.2f} | {r['sw2']:.4f} | {r['sw2_floor']:.4f} |")
  benchmarking.write_report(args.out, "teacher_2d", {"machine": machine, "results": results}, lines,
                            results=args.results)

if __name__ == "__main__":
  main()

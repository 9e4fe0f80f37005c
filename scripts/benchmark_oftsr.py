"""OFTSR's fidelity-realism knob against its teacher at many steps, on 2-D toys and on MNIST 14x14 -> 28x28.

  python scripts/benchmark_oftsr.py --out bench_out [--toys moons,8gaussians] [--mnist] [--sets 0,1,2]

Per toy: configs/toy2d_oftsr.py (teacher and student at their default budgets, in <out>/oftsr_2d/<toy>); with
--mnist also configs/mnist_oftsr.py (in <out>/oftsr_mnist). Rows: the restoration teacher with 1 Euler step (its
MMSE-like estimate), --teacher_steps, and the one-step student at each --knobs value. Every row restores --num
held-out samples per set (api.restore: degradation noise and source noise from the set's seed), mean +- sd over
--sets. Fidelity: PSNR (images, data range 2) or MSE (points) to the clean sample; realism: energy distance to fresh
data (points, with the data-vs-data floor) or classifier FID against --num data images (images, with the floor:
another --num data images; the targets come from the same data, so on a small set like mnist10k the FID of
restorations can fall below that floor). Throughput: restorations per second of the bundle's restore() on --num
inputs (after a warm-up; the metrics excluded). Writes
<out>/oftsr.json and .md and appends to docs/results/trajectory.md.
"""

from __future__ import annotations

import argparse
import os
import time


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--toys", default="moons,8gaussians")
  p.add_argument("--mnist", action="store_true", help="also train and score configs/mnist_oftsr.py")
  p.add_argument("--data", default="npz:../shared/data/mnist10k.npz", help="MNIST data source")
  p.add_argument("--classifier", default="runs/mnist_classifier", help="feature classifier for MNIST's FID")
  p.add_argument("--sets", default="0,1,2")
  p.add_argument("--num", type=int, default=2000, help="restorations per set")
  p.add_argument("--teacher_steps", default="4,50")
  p.add_argument("--knobs", default="0.01,0.25,0.5,0.75,0.99")
  benchmarking.add_results_flag(p, "trajectory")
  return p.parse_args()


def rows_for(name: str, teacher, student, source: str, args, realism) -> list[dict]:
  """One row per teacher step count and student knob: fidelity and realism over the sets, and throughput."""
  import jax
  import numpy as np

  from distill import api

  sets = [int(s) for s in args.sets.split(",")]
  settings = [("teacher", teacher, {"steps": 1})]
  settings += [("teacher", teacher, {"steps": int(k)}) for k in args.teacher_steps.split(",")]
  settings += [("OFTSR student", student, {"knob": float(k)}) for k in args.knobs.split(",")]
  rows = []
  for model, bundle, setting in settings:
    per_set = [api.restore(bundle, source, args.num, seed=seed, **setting) for seed in sets]
    observed = per_set[0]["observed"]
    bundle.restore(jax.random.key(0), observed, **setting)  # compiled: time the restoration alone
    start = time.time()
    bundle.restore(jax.random.key(0), observed, **setting)
    rate = args.num / (time.time() - start)
    row = {"data": name, "model": model, **setting, "nfe": setting.get("steps", 1), "restorations_per_sec": rate}
    for metric in ("psnr", "mse"):
      values = np.array([r[metric] for r in per_set])
      row |= {metric: float(values.mean()), f"{metric}_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    row |= realism([r["restored"] for r in per_set], per_set)
    rows.append(row)
    print(f"{name} {model} {setting}: PSNR {row['psnr']:.2f} MSE {row['mse']:.4g} realism "
          f"{row['realism']:.4g} +- {row['realism_std']:.2g}", flush=True)
  return rows


def energy_realism(restored_sets, per_set) -> dict:
  import numpy as np

  values = np.array([r["energy"] for r in per_set])
  floors = np.array([r["floor"] for r in per_set])
  return {"realism": float(values.mean()), "realism_std": float(values.std(ddof=1)), "floor": float(floors.mean())}


def classifier_realism(bench):
  """Classifier FID of each set's restorations against the bench's data half A (floor: half B)."""
  import numpy as np

  from distill.evaluation import fid
  from distill.images import to_uint8

  def realism(restored_sets, per_set) -> dict:
    del per_set
    values = np.array([fid.compare(fid.compute_statistics(bench.extractor, [(to_uint8(r), None)], "restored"),
                                   bench.reference)["fid"] for r in restored_sets])
    return {"realism": float(values.mean()), "realism_std": float(values.std(ddof=1)), "floor": bench.floor["fid"]}

  return realism


def main():
  args = parse()
  from configs import mnist_oftsr, toy2d_oftsr
  from distill import api, benchmarking

  rows = []
  for toy in [t for t in args.toys.split(",") if t]:
    config = toy2d_oftsr.get_config()
    config.data.source = f"toy:{toy}"
    result = api.train(config, os.path.join(args.out, "oftsr_2d", toy))
    teacher = api.load(result["records"]["teacher"]["bundle"])
    rows += rows_for(toy, teacher, api.load(result["bundle"]), f"toy:{toy}", args, energy_realism)
  if args.mnist:
    config = mnist_oftsr.get_config()
    config.data.source = args.data
    result = api.train(config, os.path.join(args.out, "oftsr_mnist"))
    bench = benchmarking.ClassifierFIDBench(args.data, args.classifier, args.num,
                                            os.path.join(args.out, "classifier_fid_rows.json"))
    teacher = api.load(result["records"]["teacher"]["bundle"])
    rows += rows_for("mnist", teacher, api.load(result["bundle"]), args.data, args, classifier_realism(bench))

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine) + f". {args.num} restorations per set, mean +- sd over sets "
           f"{args.sets}; realism: energy distance to fresh data (2-D) or classifier FID to data (MNIST), with the "
           "data-vs-data floor; every model at its config's default budget, judged at its last step.", "",
           "| data | model | steps | knob | NFE | PSNR (dB) | MSE | realism | floor | restorations/s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  lines += [f"| {r['data']} | {r['model']} | {r.get('steps', 1)} | {r.get('knob', '')} | {r['nfe']} | "
            f"{r['psnr']:.2f} +- {r['psnr_std']:.2f} | {r['mse']:.4g} | {r['realism']:.4g} +- {r['realism_std']:.2g} | "
            f"{r['floor']:.3g} | {r['restorations_per_sec']:.3g} |" for r in rows]
  benchmarking.write_report(args.out, "oftsr", {"machine": machine, "rows": rows}, lines, results=args.results)


if __name__ == "__main__":
  main()

"""Reflow on MNIST: the teacher at several NFE versus the one-step reflow student (configs/mnist_reflow.py) and the
SlimFlow student about half the teacher's size (configs/mnist_slimflow.py), with FID in a feature classifier's space.

  distill train --config configs/mnist_reflow.py --workdir runs/mnist_reflow \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.teacher.workdir=runs/mnist
  distill train --config configs/mnist_slimflow.py --workdir runs/mnist_slimflow \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.teacher.workdir=runs/mnist
  python scripts/benchmark_reflow_mnist.py --out bench_out --classifier runs/mnist_classifier \
      --reflow runs/mnist_reflow --slimflow runs/mnist_slimflow

The data are split at random into two disjoint halves A and B (`--num` images each): reference statistics come from
A, the data-vs-data floor is B against A, and every model is scored with `--num` samples against A (FID, precision,
recall, KID, class accuracy of the classifier on the balanced labels when the model is conditional). Rows: the
teacher at `--teacher_steps` Euler steps (its best is the reference point; 20 steps made the pairs), the
2-rectified flow at 1, 2, 4, 8, 16 steps (8 made its pairs), the one-step student distilled from the 2-RF, that
student refined on the teacher's pairs (stage `refine`), the annealing-reflow student at 1, 2, 4 steps and the
flow-guided student at 1 step.
Speed: samples/s of each one-step student against the teacher at its best NFE and at its default NFE. Sample grids
go to <out>/reflow_mnist/<model>/. Writes <out>/reflow_mnist.json and .md; finished rows are cached in
<out>/reflow_mnist/rows.json, so an interrupted run continues, and models whose stage is not finished yet are skipped
(run the script again later; the report is written once every model has its rows).
"""

from __future__ import annotations

import argparse
import json
import os


def parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--data", default="npz:../shared/data/mnist10k.npz")
  p.add_argument("--classifier", default="runs/mnist_classifier")
  p.add_argument("--reflow", default="runs/mnist_reflow", help="workdir of configs/mnist_reflow.py")
  p.add_argument("--slimflow", default="runs/mnist_slimflow", help="workdir of configs/mnist_slimflow.py")
  p.add_argument("--num", type=int, default=2000, help="samples per row and images per data half")
  p.add_argument("--teacher_steps", default="8,16,20,50")
  p.add_argument("--rate_num", type=int, default=256, help="batch size of the throughput measurements")
  return p.parse_args()


STUDENTS = ("one-step reflow student", "refined reflow student", "SlimFlow student")


def parameter_count(sampler) -> int:
  import jax
  import numpy as np

  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(sampler.params)))


def pipeline_records(workdir: str) -> dict:
  """The stage records of a pipeline's W/pipeline.json (the finished stages; {} before the first)."""
  path = os.path.join(workdir, "pipeline.json")
  return json.load(open(path)) if os.path.exists(path) else {}


def main():
  args = parse()
  import numpy as np

  import samplers
  from distill import benchmarking, cli
  from distill.evaluation import features as features_lib, fid
  from distill.quickstart import sampling_rate

  work = os.path.join(args.out, "reflow_mnist")
  os.makedirs(work, exist_ok=True)
  reflow, slim = pipeline_records(args.reflow), pipeline_records(args.slimflow)
  if "teacher" not in reflow:
    raise SystemExit(f"{args.reflow}: the teacher stage is not finished; run the pipeline first")
  if "teacher" in slim and slim["teacher"]["checksum"] != reflow["teacher"]["checksum"]:
    raise SystemExit("the two pipelines were run from different teachers")

  extractor = features_lib.classifier_features(args.classifier)
  images, labels = next(iter(fid.source_stream(args.data, chunk=10**9)))
  order = np.random.default_rng(0).permutation(len(images))
  half_a, half_b = order[:args.num], order[args.num:2 * args.num]
  reference = fid.compute_statistics(extractor, [(images[half_a], labels[half_a])], "half A")
  floor = fid.compare(fid.compute_statistics(extractor, [(images[half_b], labels[half_b])], "half B"), reference)

  cache_path = os.path.join(work, "rows.json")
  cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
  models = [("teacher", reflow, "teacher", [int(s) for s in args.teacher_steps.split(",")]),
            ("2-RF", reflow, "reflow", [1, 2, 4, 8, 16]), ("one-step reflow student", reflow, "distill", [1]),
            ("refined reflow student", reflow, "refine", [1]),
            ("SlimFlow annealing reflow", slim, "anneal", [1, 2, 4]), ("SlimFlow student", slim, "guided", [1])]
  rows, loaded = [], {}
  for name, records, stage, steps_list in models:
    if stage not in records:
      print(f"{name}: stage {stage!r} not finished yet; rerun this script when it is", flush=True)
      continue
    sampler = loaded[name] = samplers.load(records[stage]["bundle"])
    for steps in steps_list:
      key = f"{name}|{steps}|{args.num}|{sampler.meta['checksum']}"
      if key not in cache:
        row = cli.evaluate_sampler(sampler, args.data, args.num, [steps], extractor=extractor, reference=reference,
                                   plot_dir=os.path.join(work, name.replace(" ", "_")))[0]
        cache[key] = dict(model=name, params=parameter_count(sampler), **row)
        with open(cache_path + ".tmp", "w") as f:
          json.dump(cache, f, indent=1)
        os.replace(cache_path + ".tmp", cache_path)
        print(f"{name} {steps} steps: FID {row['fid']:.2f}", flush=True)
      rows.append(cache[key])

  if len(loaded) < len(models):
    return  # the finished rows are cached; the report needs every model
  teacher_rows = [r for r in rows if r["model"] == "teacher"]
  best = min(teacher_rows, key=lambda r: r["fid"])
  teacher = loaded["teacher"]
  default_steps = int(teacher.meta["sampler"]["steps"])
  rates = {"teacher_best": sampling_rate(teacher, best["steps"], args.rate_num)}
  rates |= {"teacher_default": (rates["teacher_best"] if default_steps == best["steps"]
                                else sampling_rate(teacher, default_steps, args.rate_num)),
           **{name: sampling_rate(loaded[name], 1, args.rate_num) for name in STUDENTS}}
  students = {name: next(r for r in rows if r["model"] == name) for name in STUDENTS}
  summary = {name: {"fid": r["fid"], "fid_over_teacher_best": r["fid"] / best["fid"],
                    "speedup_vs_teacher_best": rates[name] / rates["teacher_best"],
                    "speedup_vs_teacher_default": rates[name] / rates["teacher_default"],
                    "params_over_teacher": r["params"] / best["params"]} for name, r in students.items()}
  result = {"machine": benchmarking.machine_info(), "num": args.num, "data": args.data,
            "floor": {k: floor[k] for k in ("fid", "precision", "recall", "kid")}, "rows": rows,
            "teacher_best": {"steps": best["steps"], "nfe": best["nfe"], "fid": best["fid"]},
            "teacher_default_steps": default_steps, "samples_per_s": rates, "summary": summary,
            "pipelines": {"reflow": reflow, "slimflow": slim}}

  lines = [benchmarking.machine_line(result["machine"]), "",
           f"FID in the feature classifier's space ({args.classifier}), {args.num} samples against half A of "
           f"{args.data}; data floor (half B vs A): FID {floor['fid']:.2f}, precision {floor['precision']:.3f}, "
           f"recall {floor['recall']:.3f}.", "",
           "| model | params | steps | NFE | FID | precision | recall | KID | class acc. |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    acc = f"{r['class_accuracy']:.3f}" if "class_accuracy" in r else "-"
    lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['steps']} | {r['nfe']} | {r['fid']:.2f} | "
                 f"{r['precision']:.3f} | {r['recall']:.3f} | {r['kid']:.4f} | {acc} |")
  lines += ["", f"Teacher best: {best['steps']} steps, FID {best['fid']:.2f}; default {default_steps} steps.", "",
            "| one-step model | FID / teacher best | samples/s | speed-up vs teacher best NFE | vs default NFE | "
            "params / teacher |", "|---|---|---|---|---|---|"]
  for name, s in summary.items():
    lines.append(f"| {name} | {s['fid_over_teacher_best']:.2f}x | {rates[name]:.0f} | "
                 f"{s['speedup_vs_teacher_best']:.1f}x | {s['speedup_vs_teacher_default']:.1f}x | "
                 f"{s['params_over_teacher']:.2f} |")
  lines += ["", f"Teacher samples/s: {rates['teacher_best']:.1f} at {best['steps']} steps, "
            f"{rates['teacher_default']:.1f} at {default_steps} steps. Pipeline stage seconds: "
            + ", ".join(f"{p}/{s} {r.get('seconds', 0):.0f}" for p, recs in result["pipelines"].items()
                        for s, r in recs.items() if isinstance(r, dict) and "seconds" in r)]
  benchmarking.write_report(args.out, "reflow_mnist", result, lines)


if __name__ == "__main__":
  main()

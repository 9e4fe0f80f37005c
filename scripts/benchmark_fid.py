"""Cost of each part of the FID pipeline on this machine, and the split-half data-vs-data floor of a dataset.

  python scripts/benchmark_fid.py --out bench_out [--data npz:../shared/data/mnist10k.npz --classifier C]

Writes bench_out/fid_pipeline.json and .md: images/s of the FID Inception-v3 (random weights of the right shapes:
the cost does not depend on the values) on 32x32 inputs resized to 299, and of a feature classifier when given;
seconds for the Fréchet distance at 2048-d by scipy sqrtm and by eigh (with their difference); seconds for
precision/recall (k=3) and KID (100 subsets of 1000) on 10k x 10k features of 128 and 2048 dimensions. With --data
and --classifier: the FID, precision, recall and KID between two disjoint random halves of the data (the floor a
generator is compared against).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--data", default="", help="labelled image source for the split-half floor")
  p.add_argument("--classifier", default="", help="feature classifier folder (distill train-classifier)")
  p.add_argument("--inception_images", type=int, default=64)
  benchmarking.add_results_flag(p, "evaluation")
  return p.parse_args()


def timed(fn, *args, **kwargs):
  start = time.perf_counter()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - start


def main():
  args = parse()
  import numpy as np

  from distill import benchmarking
  from distill.evaluation import features as features_lib, fid
  from distill.evaluation import inception_weights
  from distill.evaluation.frechet import frechet_distance, frechet_distance_eigh
  from distill.evaluation.kid import kernel_inception_distance
  from distill.evaluation.precision_recall import precision_recall

  rng = np.random.default_rng(0)
  rows = {}
  with tempfile.TemporaryDirectory() as tmp:
    arrays = {name: rng.normal(0, 0.05, shape).astype(np.float32)
              for name, shape in inception_weights.variable_shapes().items()}
    for name in arrays:
      if name.endswith("bn/var") or name.endswith("bn/scale"):
        arrays[name] = np.abs(arrays[name]) + 1.0
    path = os.path.join(tmp, "random_inception.npz")
    inception_weights.save_weights(arrays, path, source_file="random", source_sha256="0" * 64)
    extractor = features_lib.inception_features(path, batch_size=32)
  images = rng.integers(0, 256, (args.inception_images, 32, 32, 3), dtype=np.uint8)
  extractor(images[:32])  # compile
  _, seconds = timed(extractor, images)
  rows["inception_features"] = {"images": len(images), "seconds": seconds, "images_per_sec": len(images) / seconds}
  if args.classifier:
    clf = features_lib.classifier_features(args.classifier)
    shape = clf.input_shape
    digits = rng.integers(0, 256, (10_000,) + shape, dtype=np.uint8)
    clf(digits[:1000])
    _, seconds = timed(clf, digits)
    rows["classifier_features"] = {"images": len(digits), "seconds": seconds, "images_per_sec": len(digits) / seconds}

  feats = np.maximum(rng.normal(size=(5000, 2048)), 0) + rng.normal(size=(1, 2048))
  other = np.maximum(rng.normal(size=(5000, 2048)), 0) * 1.1
  mu1, s1, mu2, s2 = feats.mean(0), np.cov(feats, rowvar=False), other.mean(0), np.cov(other, rowvar=False)
  exact, t_exact = timed(frechet_distance, mu1, s1, mu2, s2)
  approx, t_eigh = timed(frechet_distance_eigh, mu1, s1, mu2, s2)
  rows["frechet_2048"] = {"sqrtm_seconds": t_exact, "eigh_seconds": t_eigh, "fid": exact,
                          "abs_difference": abs(exact - approx)}
  for dim in (128, 2048):
    a, b = rng.normal(size=(10_000, dim)).astype(np.float32), rng.normal(size=(10_000, dim)).astype(np.float32)
    _, t_pr = timed(precision_recall, a, b, k=3)
    _, t_kid = timed(kernel_inception_distance, a, b)
    rows[f"pr_kid_{dim}d_10k"] = {"precision_recall_seconds": t_pr, "kid_seconds": t_kid}

  if args.data and args.classifier:
    clf = features_lib.classifier_features(args.classifier)
    examples = next(iter(fid.source_stream(args.data, chunk=10**9)))
    order = rng.permutation(len(examples[0]))
    halves = [order[: len(order) // 2], order[len(order) // 2:]]
    stats = [fid.compute_statistics(clf, [(examples[0][h], examples[1][h])], f"half {i}") for i, h in
             enumerate(halves)]
    floor = fid.compare(stats[0], stats[1])
    rows["split_half_floor"] = {k: floor[k] for k in ("fid", "precision", "recall", "kid", "num_generated")}

  machine = benchmarking.machine_info()
  lines = [benchmarking.machine_line(machine), "", "| part | figures |", "|---|---|"]
  for name, r in rows.items():
    lines.append(f"| {name} | " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in r.items()) + " |")
  benchmarking.write_report(args.out, "fid_pipeline", {"machine": machine, "results": rows}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

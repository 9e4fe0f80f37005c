"""`distill fid`, `distill train-classifier` and `distill lpips-weights` (pretrained-network commands).

  distill fid (--sampler B | --workdir W | --samples S.npz) [--features inception|classifier:C] [--ref R]
              [--num 50000] [--steps K] [--seed S] [--json OUT] [--save_samples S.npz|DIR]
  distill fid stats --data SOURCE --out stats.npz [--features F] [--num N]
  distill fid convert-weights --pth pt_inception-2015-12-05-6726825d.pth [--out weights.npz]
  distill train-classifier --data npz:P.npz --out C [--steps 2000] [--holdout 1000]
  distill lpips-weights --vgg vgg16-397923af.pth --lin vgg.pth [--out lpips_vgg.npz]

--ref is a data source (npz:, tfds:) or a statistics file from `distill fid stats`; for a sampler or workdir it
defaults to the data source the model was trained on.
"""

from __future__ import annotations

import json
import os
import time

from absl import flags

from distill.cli import export_workdir, parse_flags, require_flags
from distill.errors import UserError


def _features_flag(fv):
  flags.DEFINE_string("features", "inception", "inception, inception:<weights.npz> or classifier:<folder>",
                      flag_values=fv)


def cmd_convert_weights(argv):
  from distill.evaluation import inception_weights

  def define(fv, argv):
    flags.DEFINE_string("pth", None, f"pytorch-fid's {inception_weights.OFFICIAL_PTH}", flag_values=fv)
    flags.DEFINE_string("out", inception_weights.default_weights_path(), "converted .npz", flag_values=fv)
    flags.DEFINE_bool("check_hash", True, "require the official file's SHA-256 prefix", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "pth")
  meta = inception_weights.convert(fv.pth, fv.out, check_hash=fv.check_hash)
  print(f"converted {fv.pth} (sha256 {meta['source_sha256'][:16]}...) to {fv.out} "
        f"(weights sha256 {meta['weights_sha256'][:16]}...)")


def cmd_lpips_weights(argv):
  from distill import lpips_weights

  def define(fv, argv):
    flags.DEFINE_string("vgg", None, f"torchvision's {lpips_weights.VGG16_PTH}", flag_values=fv)
    flags.DEFINE_string("lin", None, f"LPIPS v0.1's linear layers ({lpips_weights.LIN_URL})", flag_values=fv)
    flags.DEFINE_string("out", lpips_weights.default_weights_path(), "converted .npz", flag_values=fv)
    flags.DEFINE_bool("check_hash", True, "require torchvision's SHA-256 prefix for --vgg", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "vgg", "lin")
  meta = lpips_weights.convert(fv.vgg, fv.lin, fv.out, check_hash=fv.check_hash)
  print(f"converted {fv.vgg} + {fv.lin} to {fv.out} (weights sha256 {meta['weights_sha256'][:16]}...)")


def cmd_stats(argv):
  from distill.evaluation import features as features_lib, fid

  def define(fv, argv):
    flags.DEFINE_string("data", None, "image data source (npz:P.npz, tfds:cifar10[:split])", flag_values=fv)
    flags.DEFINE_string("out", None, "statistics .npz (metadata goes to the .json beside it)", flag_values=fv)
    _features_flag(fv)
    flags.DEFINE_integer("num", None, "use this many images drawn without replacement (default: all)",
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed for --num", flag_values=fv)
    flags.DEFINE_integer("keep", fid.KEEP_FEATURES, "raw features kept for precision/recall and KID",
                         flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "data", "out")
  start = time.time()
  extractor = features_lib.make_features(fv.features)
  stats = fid.compute_statistics(extractor, fid.source_stream(fv.data, fv.num, fv.seed), fv.data, keep=fv.keep)
  fid.save_statistics(fv.out, stats)
  print(f"statistics of {stats.n} images of {fv.data} ({extractor.metadata['extractor']}, {extractor.dim}-d) "
        f"written to {fv.out} in {time.time() - start:.1f}s")


def _generated(fv, extractor):
  """(statistics of the generated images, what they are, NFE or None, the model's training data source or None)."""
  import samplers
  from distill.evaluation import fid

  if fv.samples:
    return fid.compute_statistics(extractor, fid.samples_stream(fv.samples), fv.samples), fv.samples, None, None
  bundle = fv.sampler or export_workdir(fv.workdir)
  sampler = samplers.load(bundle)
  if sampler.kind != "images":
    raise UserError(f"{bundle} generates {sampler.kind}; FID needs an image model (use `distill eval` for points)")
  kept = [] if fv.save_samples else None
  stream = fid.sampler_stream(sampler, fv.num, fv.steps, fv.seed, keep_images=kept)
  stats = fid.compute_statistics(extractor, stream, f"sampler {bundle}")
  if kept:
    fid.save_samples(fv.save_samples, kept)
  return stats, bundle, sampler.nfe(fv.steps), sampler.meta.get("provenance", {}).get("data_source")


def format_metrics(metrics: dict) -> str:
  """One line per metric, KID with its standard deviation over subsets."""
  lines = []
  for key in ("fid", "precision", "recall", "kid", "class_accuracy", "nfe", "num_generated", "num_reference",
              "seconds"):
    if key in metrics:
      value = metrics[key]
      text = f"{value:.5g}" if isinstance(value, float) else str(value)
      if key == "kid":
        text += f" ± {metrics['kid_std']:.2g}"
      lines.append(f"{key:>15}: {text}")
  if "class_histogram" in metrics:
    lines.append(f"{'class_histogram':>15}: {metrics['class_histogram']}")
  return "\n".join(lines)


def cmd_evaluate(argv):
  from distill.evaluation import features as features_lib, fid

  def define(fv, argv):
    flags.DEFINE_string("sampler", None, "exported sampler bundle", flag_values=fv)
    flags.DEFINE_string("workdir", None, "training workdir (its latest checkpoint is exported first)",
                        flag_values=fv)
    flags.DEFINE_string("samples", None, ".npz with uint8 'samples' (and 'labels')", flag_values=fv)
    _features_flag(fv)
    flags.DEFINE_string("ref", None, "reference: data source (npz:, tfds:) or `distill fid stats` file",
                        flag_values=fv)
    flags.DEFINE_integer("num", 50_000, "samples to generate", flag_values=fv)
    flags.DEFINE_integer("ref_num", None, "reference images drawn from a data source (default: all)",
                         flag_values=fv)
    flags.DEFINE_integer("steps", None, "sampler steps (default: the bundle's)", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "sample i uses fold_in(key(seed), i)", flag_values=fv)
    flags.DEFINE_string("json", None, "write the metrics as JSON here", flag_values=fv)
    flags.DEFINE_string("save_samples", None, "also save the samples: .npz, or a folder of PNGs", flag_values=fv)

  fv = parse_flags(argv, define)
  if sum(bool(v) for v in (fv.sampler, fv.workdir, fv.samples)) != 1:
    raise UserError("give exactly one of --sampler, --workdir and --samples")
  if fv.samples and not os.path.isfile(fv.samples):
    raise UserError(f"samples file not found: {fv.samples}")
  start = time.time()
  extractor = features_lib.make_features(fv.features)
  generated, what, nfe, trained_on = _generated(fv, extractor)
  ref = fv.ref or trained_on
  if not ref:
    raise UserError("pass --ref (a data source such as npz:P.npz, or a `distill fid stats` file)")
  reference = fid.reference_statistics(ref, extractor, fv.ref_num)
  metrics = fid.compare(generated, reference)
  metrics.update({"features": fv.features, "generated": what, "reference": ref,
                  "seconds": round(time.time() - start, 1)})
  if nfe is not None:
    metrics["nfe"] = nfe
  print(f"{what} vs {ref} in {extractor.metadata['extractor']} features ({extractor.dim}-d)")
  print(format_metrics(metrics))
  if fv.json:
    os.makedirs(os.path.dirname(os.path.abspath(fv.json)), exist_ok=True)
    with open(fv.json, "w") as f:
      json.dump(metrics, f, indent=2)


def cmd_fid(argv):
  subcommands = {"convert-weights": cmd_convert_weights, "stats": cmd_stats}
  if argv and argv[0] in subcommands:
    return subcommands[argv[0]](argv[1:])
  return cmd_evaluate(argv)


def cmd_train_classifier(argv):
  from distill.evaluation.classifier import train_classifier

  def define(fv, argv):
    flags.DEFINE_string("data", None, "labelled uint8 image source (npz:P.npz with images+labels, tfds:mnist)",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "output folder", flag_values=fv)
    flags.DEFINE_integer("steps", 2000, "training steps", flag_values=fv)
    flags.DEFINE_integer("batch_size", 128, "batch size", flag_values=fv)
    flags.DEFINE_float("learning_rate", 2e-3, "Adam learning rate", flag_values=fv)
    flags.DEFINE_integer("holdout", 1000, "held-out examples for the reported accuracy", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed (initialisation, hold-out split, batches)", flag_values=fv)

  fv = parse_flags(argv, define)
  require_flags(fv, "data", "out")
  start = time.time()
  meta = train_classifier(fv.data, fv.out, steps=fv.steps, batch_size=fv.batch_size,
                          learning_rate=fv.learning_rate, holdout=fv.holdout, seed=fv.seed)
  print(f"classifier saved to {fv.out}: held-out accuracy {meta['heldout']['accuracy']:.4f} "
        f"({meta['heldout']['num']} examples), {time.time() - start:.0f}s; "
        f"use it with --features classifier:{fv.out}")

"""`distill fid`, `distill train-classifier` and `distill lpips-weights` (pretrained-network commands): flags in,
distill/api.py (and the weight converters) called.

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

from distill.cli_flags import parse_flags, require_flags


def _features_flag(fv):
  flags.DEFINE_string("features", "inception", "inception, inception:<weights.npz> or classifier:<folder>",
                      flag_values=fv)


def cmd_convert_weights(argv):
  from distill.evaluation import inception_weights

  def define(fv, argv):
    flags.DEFINE_string("pth", None, f"pytorch-fid's {inception_weights.OFFICIAL_PTH}", flag_values=fv)
    flags.DEFINE_string("out", inception_weights.default_weights_path(), "converted .npz", flag_values=fv)
    flags.DEFINE_bool("check_hash", True, "require the official file's SHA-256 prefix", flag_values=fv)

  fv = parse_flags(argv, define, "fid convert-weights", "convert pytorch-fid's Inception weights to .npz")
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

  fv = parse_flags(argv, define, "lpips-weights", "convert VGG16 + LPIPS linear weights to .npz")
  require_flags(fv, "vgg", "lin")
  meta = lpips_weights.convert(fv.vgg, fv.lin, fv.out, check_hash=fv.check_hash)
  print(f"converted {fv.vgg} + {fv.lin} to {fv.out} (weights sha256 {meta['weights_sha256'][:16]}...)")


def cmd_stats(argv):
  from distill import api
  from distill.evaluation import fid

  def define(fv, argv):
    flags.DEFINE_string("data", None, "image data source (npz:P.npz, tfds:cifar10[:split])", flag_values=fv)
    flags.DEFINE_string("out", None, "statistics .npz (metadata goes to the .json beside it)", flag_values=fv)
    _features_flag(fv)
    flags.DEFINE_integer("num", None, "use this many images drawn without replacement (default: all)",
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed for --num", flag_values=fv)
    flags.DEFINE_integer("keep", fid.KEEP_FEATURES, "raw features kept for precision/recall and KID",
                         flag_values=fv)

  fv = parse_flags(argv, define, "fid stats", "reference statistics of an image data source")
  require_flags(fv, "data", "out")
  start = time.time()
  stats = api.fid_stats(fv.data, fv.out, fv.features, fv.num, fv.seed, fv.keep)
  print(f"statistics of {stats.n} images of {fv.data} ({stats.metadata['extractor']}, {stats.metadata['dim']}-d) "
        f"written to {fv.out} in {time.time() - start:.1f}s")


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
  from distill import api
  from distill.errors import UserError

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

  fv = parse_flags(argv, define, "fid", "FID, precision, recall and KID of a sampler or samples file "
                   "(subcommands: stats, convert-weights)")
  if sum(bool(v) for v in (fv.sampler, fv.workdir, fv.samples)) != 1:
    raise UserError("give exactly one of --sampler, --workdir and --samples")
  sampler = fv.sampler or (api.export(fv.workdir) if fv.workdir else None)
  metrics = api.fid(sampler, fv.samples, features=fv.features, ref=fv.ref, num=fv.num, ref_num=fv.ref_num,
                    steps=fv.steps, seed=fv.seed, save_samples=fv.save_samples)
  extractor = metrics.pop("extractor")
  print(f"{metrics['generated']} vs {metrics['reference']} in {extractor['extractor']} features "
        f"({extractor['dim']}-d)")
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

  fv = parse_flags(argv, define, "train-classifier", "train the small CNN whose features give FID at MNIST scale")
  require_flags(fv, "data", "out")
  start = time.time()
  meta = train_classifier(fv.data, fv.out, steps=fv.steps, batch_size=fv.batch_size,
                          learning_rate=fv.learning_rate, holdout=fv.holdout, seed=fv.seed)
  print(f"classifier saved to {fv.out}: held-out accuracy {meta['heldout']['accuracy']:.4f} "
        f"({meta['heldout']['num']} examples), {time.time() - start:.0f}s; "
        f"use it with --features classifier:{fv.out}")

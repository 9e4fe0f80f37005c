"""Everything the `distill` command does, as Python functions (the CLI only parses flags and calls these).

  from distill import api
  api.train(config, "runs/w")                       # a training config or a multi-stage pipeline config
  bundle = api.export("runs/w", "runs/w/export")    # stablehlo=True also writes a jax-only sampler
  out = api.sample(bundle, 1000, seed=0)            # {"samples": ..., "labels": ...}
  rows = api.evaluate(bundle, "toy:moons", 4000, [1, 4])
  metrics = api.fid(sampler=bundle, features="classifier:runs/clf", ref="npz:data.npz", num=2000)

Samplers are bundle paths or `samplers.load(...)` results; sample i always comes from fold_in(key(seed), i).
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import samplers
from distill import autodiffusion as autodiffusion_lib, boss as boss_lib, data as data_lib, pairs as pairs_lib
from distill import branching, pipeline, run
from distill.errors import UserError
from distill.evaluation import features as features_lib, fid as fid_lib
from distill.evaluation import save_curve, save_image_grid, save_scatter, two_sample_report
from distill.evaluation.classifier import train_classifier
from distill.evaluation.straightness import straightness
from distill.exporting import export_workdir
from distill.pipeline_config import final_stage, is_pipeline
from distill.reporting import METRICS_FILE
from distill.teacher import load_teacher
from samplers.export import ExportedSampler
from samplers.generator import default_labels
from samplers.stablehlo import export_stablehlo

__all__ = ["train", "branch", "export", "load", "sample", "restore", "evaluate", "fid", "fid_stats", "make_pairs",
           "boss", "train_classifier", "flow_straightness", "plot_fid_history", "format_table"]

load = samplers.load


def _sampler(sampler) -> ExportedSampler:
  return sampler if isinstance(sampler, ExportedSampler) else samplers.load(sampler)


def train(config, workdir: str, overwrite: bool = False, log=print) -> dict:
  """Train `config` in `workdir` (resuming a run there; a workdir of another config is refused unless `overwrite`).
  Returns {"workdir", "step"} for a training config and {"workdir", "records", "bundle"} for a pipeline config
  (its stage records and the final train stage's exported model)."""
  if is_pipeline(config):
    records = pipeline.run_pipeline(config, workdir, log=log, overwrite=overwrite)
    return {"workdir": workdir, "records": records, "bundle": records[final_stage(config)]["bundle"]}
  state = run.train(config, workdir, overwrite=overwrite)
  return {"workdir": workdir, "step": int(state.step)}


def branch(config, source: str, workdir: str, step: int) -> None:
  """Make `workdir` a run of `config` that resumes from `source`'s checkpoint at `step` (distill/branching.py): a
  shared prefix, like a warm-up, trained once for several variants."""
  branching.branch(config, source, workdir, step)


def export(workdir: str, out: str | None = None, step: int | None = None, best: bool = False,
           stablehlo: bool = False, stablehlo_steps=None, log=print) -> str:
  """Export `workdir`'s EMA model as a sampler bundle (distill/exporting.py); with `stablehlo` also
  OUT/stablehlo/steps_<K>.bin for each K in `stablehlo_steps` (default: 1 and the default step count;
  samplers/stablehlo.py). Returns the bundle."""
  bundle = export_workdir(workdir, out, step, best, log=log)
  if stablehlo:
    loaded = samplers.load(bundle)
    if loaded.restorer is not None:
      raise UserError(f"wrote {bundle}, but not its StableHLO sampler: StableHLO export covers sampling from noise, "
                      "and this is a restoration model (OFTSR)")
    written = export_stablehlo(loaded, stablehlo_steps)
    log(f"StableHLO sampler for {', '.join(str(k) for k in written)} steps in {os.path.join(bundle, 'stablehlo')}")
  return bundle


def sample(sampler, num: int, steps: int | None = None, seed: int = 0, labels=None) -> dict:
  """{"samples": uint8 (num, H, W, C) images or float32 (num, D) points, "labels": int32 (num,) for a conditional
  model}; `labels` is one label per sample, or fewer repeated cyclically (default: index mod num_classes)."""
  s = _sampler(sampler)
  if labels is not None:
    if not s.num_classes:
      raise UserError("this model is unconditional: it takes no labels")
    labels = np.resize(np.asarray(labels, np.int32), num)
  out = {"samples": s.sample(jax.random.key(seed), num, steps=steps, labels=labels)}
  if s.num_classes:
    out["labels"] = labels if labels is not None else default_labels(np.arange(num), s.num_classes)
  return out


def restore(sampler, data_source: str, num: int, steps: int | None = None, knob: float | None = None,
            seed: int = 0) -> dict:
  """Degrade `num` held-out samples of `data_source` (draw 30000 + seed) with a restoration bundle's degradation and
  restore them (a teacher with `steps` Euler steps, an OFTSR student at time `knob`; samplers/restoration.py).
  Returns {'target', 'observed', 'restored'} float32 arrays in data space and the scalars 'mse' (per element),
  'psnr' (dB, mean over examples; data range 2 for images, the targets' peak-to-peak for points), 'observed_psnr'
  (of the lifted input) and for points 'energy' (energy distance of the restorations to fresh data, draw 40000 +
  seed) with its data-vs-data 'floor'."""
  from distill import data as data_lib
  from distill.restoration import psnr

  s = _sampler(sampler)
  source = data_lib.make_source(data_source, seed)
  if tuple(source.spec.shape) != s.shape:
    raise UserError(f"{data_source} gives samples of shape {source.spec.shape}, the bundle restores {s.shape}")
  target = np.asarray(source.sample(num, seed=30_000 + seed)["x"], np.float32)
  key = jax.random.key(seed)
  observed = s.observe(key, target)
  restored = s.restore(key, observed, steps, knob)
  data_range = 2.0 if s.kind == "images" else float(np.ptp(target))
  out = {"target": target, "observed": observed, "restored": restored, "mse": float(np.mean((restored - target) ** 2)),
         "psnr": float(np.mean(psnr(restored, target, data_range))),
         "observed_psnr": float(np.mean(psnr(observed, target, data_range)))}
  if s.kind == "points":
    from distill.evaluation.distances import energy_distance

    fresh = np.asarray(source.sample(num, seed=40_000 + seed)["x"], np.float32)
    out |= {"energy": energy_distance(restored, fresh), "floor": energy_distance(target, fresh)}
  return out


def evaluate(sampler, data_source: str | None, num: int, steps_list, seed: int = 0, plot_dir: str | None = None,
             extractor=None, reference=None) -> list[dict]:
  """Rows {steps, solver, nfe, seconds, metrics...} for each step count (nfe: the mean per sample, which varies
  only under the adaptive rk45); 2-D data: energy distance and sliced W2 against fresh data with the data-vs-data
  floor; images: a PNG grid per step count, and FID, precision, recall and KID when a feature `extractor` and
  `reference` statistics are given (plus a plot of FID against NFE)."""
  sampler = _sampler(sampler)
  source = data_lib.make_source(data_source, seed) if sampler.kind == "points" else None
  labels = default_labels(np.arange(num), sampler.num_classes) if sampler.num_classes else None
  rows = []
  for steps in steps_list:
    start = time.time()
    x, nfe = sampler.sample_with_nfe(jax.random.key(seed), num, steps=steps, labels=labels)
    mean_nfe = sampler.nfe(steps) or round(float(np.mean(nfe)), 1)  # nfe() is None for the adaptive rk45
    row = {"steps": steps, "solver": sampler.meta["sampler"]["solver"], "nfe": mean_nfe,
           "seconds": round(time.time() - start, 3)}
    if extractor is not None:
      metrics = fid_lib.compare(fid_lib.compute_statistics(extractor, [(x, labels)], f"{steps} steps"), reference)
      row.update({k: metrics[k] for k in ("fid", "precision", "recall", "kid", "class_accuracy") if k in metrics})
    if source is not None:
      row.update(two_sample_report(x, source.sample(num, seed=1000 + seed)["x"],
                                   source.sample(num, seed=2000 + seed)["x"]))
    if plot_dir:
      os.makedirs(plot_dir, exist_ok=True)
      path = os.path.join(plot_dir, f"samples_{steps}steps.png")
      if source is not None and x.shape[1] == 2:
        save_scatter(path, {"data": source.sample(num, seed=1000 + seed)["x"], f"{steps} steps": x})
      elif source is None:
        save_image_grid(path, x[:64])
      row["plot"] = path
    rows.append(row)
  if plot_dir and extractor is not None and len(rows) > 1:
    save_curve(os.path.join(plot_dir, "fid_vs_nfe.png"), [r["nfe"] for r in rows], {"FID": [r["fid"] for r in rows]},
               "NFE", "FID", log_x=True)
  return rows


def fid(sampler=None, samples: str | None = None, *, features: str = "inception", ref: str | None = None,
        num: int = 50_000, ref_num: int | None = None, steps: int | None = None, seed: int = 0,
        save_samples: str | None = None) -> dict:
  """FID, precision, recall, KID (and class metrics for classifier features) of a sampler's `num` samples or of a
  samples .npz (uint8 'samples', optional 'labels') against `ref`: a data source or a `fid_stats` file (default:
  the data source the sampler was trained on). `save_samples` keeps the generated images (.npz or a PNG folder)."""
  if (sampler is None) == (samples is None):
    raise UserError("give exactly one of a sampler and a samples file")
  if samples is not None and not os.path.isfile(samples):
    raise UserError(f"samples file not found: {samples}")
  start = time.time()
  extractor = features_lib.make_features(features)
  nfe = trained_on = None
  if samples is not None:
    generated, what = fid_lib.compute_statistics(extractor, fid_lib.samples_stream(samples), samples), samples
  else:
    s = _sampler(sampler)
    if s.kind != "images":
      raise UserError(f"{s.path} generates {s.kind}; FID needs an image model (use `distill eval` for points)")
    kept = [] if save_samples else None
    generated = fid_lib.compute_statistics(extractor, fid_lib.sampler_stream(s, num, steps, seed, keep_images=kept),
                                           f"sampler {s.path}")
    if kept:
      fid_lib.save_samples(save_samples, kept)
    what, nfe, trained_on = s.path, s.nfe(steps), s.meta.get("provenance", {}).get("data_source")
  ref = ref or trained_on
  if not ref:
    raise UserError("pass a reference (a data source such as npz:P.npz, or a `distill fid stats` file)")
  metrics = fid_lib.compare(generated, fid_lib.reference_statistics(ref, extractor, ref_num))
  metrics.update({"features": features, "generated": what, "reference": ref, "extractor": extractor.metadata,
                  "seconds": round(time.time() - start, 1)})
  if nfe is not None:
    metrics["nfe"] = nfe
  return metrics


def fid_stats(data: str, out: str, features: str = "inception", num: int | None = None, seed: int = 0,
              keep: int = fid_lib.KEEP_FEATURES) -> fid_lib.Statistics:
  """Reference statistics of an image data source (all of it, or `num` images drawn without replacement) written to
  `out` (.npz plus a .json sidecar with the feature metadata)."""
  extractor = features_lib.make_features(features)
  stats = fid_lib.compute_statistics(extractor, fid_lib.source_stream(data, num, seed), data, keep=keep)
  fid_lib.save_statistics(out, stats)
  return stats


def make_pairs(out: str, num: int, teacher: str | None = None, teacher_workdir: str | None = None, seed: int = 0,
               shard_size: int = 10_000, solver: str | None = None, grid: str | None = None,
               steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5) -> dict:
  """Write (or resume) a store of `num` (noise, teacher sample) pairs from a teacher bundle or workdir; solver, grid
  and steps default to the teacher's sampler. Returns the store's metadata."""
  if bool(teacher) == bool(teacher_workdir):
    raise UserError("give exactly one of a teacher bundle and a teacher workdir")
  if teacher_workdir and not os.path.exists(os.path.join(teacher_workdir, "export")):
    export_workdir(teacher_workdir)
  model = load_teacher(ml_collections.ConfigDict(dict(bundle=teacher or "", workdir=teacher_workdir or "",
                                                      dtype="float32")))
  sampler = dict(model.bundle_meta["sampler"])
  sampler.update({k: v for k, v in (("solver", solver), ("grid", grid)) if v})
  if sampler["solver"] == "rk45":
    sampler.update(rtol=rtol, atol=atol)
  return pairs_lib.generate_pairs(out, model, num=num, seed=seed, shard_size=shard_size, sampler_config=sampler,
                                  steps=steps)


def boss(sampler: str, num_steps: int, out_json: str, out_bundle: str | None = None, fine_steps: int = 100,
         num: int = 100, seed: int = 0) -> dict:
  """BOSS's Bellman-optimal K-step Euler grid for a flow bundle, written to `out_json` (and as a bundle that samples
  on it to `out_bundle`); returns the grid record (RF-time nodes, jump cost, the uniform grid's cost)."""
  return boss_lib.export_bellman_sampler(sampler, out_json, out_bundle, num_steps, fine_steps=fine_steps,
                                         num_samples=num, seed=seed)


def autodiffusion(sampler: str, num_steps: int, out_json: str, out_bundle: str | None = None, **options) -> dict:
  """AutoDiffusion's evolutionary search of a bundle's K sampling steps (distill/autodiffusion.py), written to
  `out_json` (and as a bundle that samples on the grid to `out_bundle`); returns the record (nodes, sigmas, fitness,
  the uniform grid's fitness, best fitness per epoch)."""
  return autodiffusion_lib.export_autodiffusion_sampler(sampler, out_json, out_bundle, num_steps, **options)


def flow_straightness(sampler, num: int, seed: int = 0, steps: int = 100) -> dict:
  """Straightness S of a bundle's flow (distill/evaluation/straightness.py) on `num` paths of `steps` uniform Euler
  steps from t = 1e-3 to 1, and the mean squared distance of the one-step Euler sample from the path's end."""
  sampler = _sampler(sampler)
  z = (1.0 - 1e-3) * jax.random.normal(jax.random.key(seed), (num,) + sampler.shape)
  velocity = lambda x, t: sampler.network.velocity(sampler.params, x, jnp.full(x.shape[:1], t))
  s, z1 = straightness(velocity, z, np.linspace(1e-3, 1.0, steps + 1))
  one_step = z + (1.0 - 1e-3) * velocity(z, 1e-3)
  return {"straightness": float(s), "one_step_error": float(jnp.mean((one_step - z1) ** 2))}


def plot_fid_history(workdir: str, path: str) -> bool:
  """Plot the in-training FID (eval/fid in metrics.jsonl) against the training step; False when there is none."""
  metrics_path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(metrics_path):
    return False
  with open(metrics_path) as f:
    points = sorted({r["step"]: r["eval/fid"] for r in map(json.loads, f) if "eval/fid" in r}.items())
  if not points:
    return False
  save_curve(path, [p[0] for p in points], {"FID": [p[1] for p in points]}, "training step", "FID")
  return True


def format_table(rows) -> str:
  """Rows of dicts (same keys) as a markdown table; floats to 4 significant digits, 'plot' paths left out."""
  keys = [k for k in rows[0] if k != "plot"]
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
  return "\n".join(lines)

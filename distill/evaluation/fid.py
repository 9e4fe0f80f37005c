"""FID, precision/recall, KID and class statistics end to end: image streams -> features -> statistics -> metrics.

Image streams yield (uint8 NHWC images, int32 labels or None) chunks from a data source, a stored samples file or a
sampler (sample i uses fold_in(key, i), so the samples do not depend on chunking or device count).

A statistics file (`distill fid stats`) is an .npz with `mu` (D,) and `sigma` (D, D) in float64, `n`, up to
`keep` raw features (for precision/recall and KID) and class counts when the extractor is a classifier, plus a JSON
sidecar `<name>.json` with the metadata: feature extractor, its weights SHA-256, resize mode, quantisation, dataset,
count. Statistics whose feature metadata differ are never compared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Iterable, Iterator

import numpy as np

from distill.errors import UserError
from distill.evaluation.features import FeatureExtractor
from distill.evaluation.frechet import FeatureStats, frechet_distance, frechet_distance_eigh
from distill.evaluation.kid import kernel_inception_distance
from distill.evaluation.precision_recall import precision_recall

STATS_FORMAT = 1
# Metadata that must agree for two statistics to be comparable (dataset and count may differ).
COMPARED_KEYS = ("extractor", "weights_sha256", "resize", "quantization", "dim")
KEEP_FEATURES = 10_000  # raw features kept per side for precision/recall (k-NN, quadratic cost) and KID
CHUNK = 1000

Stream = Iterable[tuple[np.ndarray, np.ndarray | None]]


@dataclasses.dataclass
class Statistics:
  """Gaussian statistics of a feature set plus what precision/recall, KID and class metrics need."""

  mu: np.ndarray
  sigma: np.ndarray
  n: int
  metadata: dict
  features: np.ndarray | None = None  # the first min(n, keep) features
  class_counts: np.ndarray | None = None  # predicted-class histogram (classifier features)
  class_correct: int | None = None  # predictions equal to the conditioning label (conditional samples)


def compute_statistics(extractor: FeatureExtractor, stream: Stream, dataset: str,
                       keep: int = KEEP_FEATURES) -> Statistics:
  """Stream images through the extractor, accumulating float64 mean/covariance and the per-class counts."""
  acc = FeatureStats(extractor.dim)
  kept, counts, correct, any_labels = [], None, 0, False
  for images, labels in stream:
    out = extractor(images)
    acc.update(out["features"])
    if keep > sum(len(k) for k in kept):
      kept.append(out["features"][:keep - sum(len(k) for k in kept)])
    if "logits" in out:
      predicted = np.argmax(out["logits"], axis=-1)
      num_classes = out["logits"].shape[-1]
      counts = (0 if counts is None else counts) + np.bincount(predicted, minlength=num_classes)
      if labels is not None:
        any_labels = True
        correct += int(np.sum(predicted == labels))
  if acc.n < 2:
    raise UserError(f"{dataset}: need at least 2 images for statistics, got {acc.n}")
  metadata = {**extractor.metadata, "dataset": dataset, "count": int(acc.n), "format_version": STATS_FORMAT}
  return Statistics(acc.mean(), acc.covariance(), acc.n, metadata, np.concatenate(kept), counts,
                    correct if any_labels else None)


# ----- image streams ----------------------------------------------------------------------------------------------


def source_stream(data_source: str, num: int | None = None, seed: int = 0, chunk: int = CHUNK) -> Stream:
  """The stored images of an `npz:`/`tfds:` source, all in file order or `num` of them drawn without replacement
  (seeded). Labels are passed on when the source has them."""
  from distill import data as data_lib

  source = data_lib.make_source(data_source, seed)
  if source.spec.kind != "images":
    raise UserError(f"{data_source} holds {source.spec.kind}, not images; FID needs images")
  examples = source.examples()
  x, labels = examples["x"], examples.get("label")
  if num is not None and num < len(x):
    idx = np.sort(np.random.default_rng(seed).choice(len(x), num, replace=False))
    x, labels = x[idx], None if labels is None else labels[idx]
  return _chunks(x, labels, chunk)


def samples_stream(path: str, chunk: int = CHUNK) -> Stream:
  """Images stored by `distill sample` / `distill fid --save_samples`: an .npz with uint8 `samples` (and `labels`)."""
  if not os.path.isfile(path):
    raise UserError(f"samples file not found: {path}")
  try:
    with np.load(path) as f:
      if "samples" not in f.files:
        raise UserError(f"{path} has no 'samples' array (found {sorted(f.files)})")
      x = f["samples"]
      labels = f["labels"] if "labels" in f.files else None
  except (OSError, ValueError) as e:
    raise UserError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
  if x.dtype != np.uint8 or x.ndim != 4:
    raise UserError(f"{path}: 'samples' must be uint8 NHWC images, got {x.dtype} {x.shape}")
  return _chunks(x, labels, chunk)


def _chunks(x: np.ndarray, labels: np.ndarray | None, chunk: int) -> Iterator:
  for start in range(0, len(x), chunk):
    yield x[start:start + chunk], None if labels is None else labels[start:start + chunk]


def sampler_stream(sampler, num: int, steps: int | None = None, seed: int = 0, chunk: int = CHUNK,
                   keep_images: list | None = None) -> Stream:
  """`num` uint8 samples of an exported sampler (sample i from fold_in(key(seed), i)); conditional samplers get
  balanced labels i mod num_classes. Chunks are appended to `keep_images` when given (for saving)."""
  from samplers.generator import default_labels

  import jax

  key = jax.random.key(seed)
  for start in range(0, num, chunk):
    n = min(chunk, num - start)
    labels = default_labels(np.arange(start, start + n), sampler.num_classes) if sampler.num_classes else None
    images = sampler.sample(key, n, steps=steps, labels=labels, first_index=start)
    if keep_images is not None:
      keep_images.append((images, labels))
    yield images, labels


def save_samples(path: str, chunks: list) -> None:
  """Write (images, labels) chunks as an .npz (`samples`, `labels`) or, for any other path, a folder of PNGs."""
  from PIL import Image

  images = np.concatenate([c[0] for c in chunks])
  labels = None if chunks[0][1] is None else np.concatenate([c[1] for c in chunks])
  if path.endswith(".npz"):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, samples=images, **({} if labels is None else {"labels": labels}))
    return
  os.makedirs(path, exist_ok=True)
  for i, image in enumerate(images):
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(os.path.join(path, f"{i:06d}.png"))


# ----- statistics files -------------------------------------------------------------------------------------------


def _sidecar(path: str) -> str:
  return os.path.splitext(path)[0] + ".json"


def save_statistics(path: str, stats: Statistics) -> None:
  """Write the .npz and its JSON sidecar, each atomically (temporary file + rename)."""
  path = os.path.abspath(path)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arrays = {"mu": stats.mu, "sigma": stats.sigma, "n": np.int64(stats.n)}
  if stats.features is not None:
    arrays["features"] = stats.features
  if stats.class_counts is not None:
    arrays["class_counts"] = stats.class_counts
  for target, write in ((path, lambda f: np.savez(f, **arrays)),
                        (_sidecar(path), lambda f: f.write(json.dumps(stats.metadata, indent=2).encode()))):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".stats-")
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.replace(tmp, target)


def load_statistics(path: str) -> Statistics:
  """Read a statistics file written by `distill fid stats`; a missing sidecar or corrupt file is a clear error."""
  if not os.path.isfile(path):
    raise UserError(f"statistics file not found: {path}")
  if not os.path.isfile(_sidecar(path)):
    raise UserError(f"{path} has no metadata sidecar {_sidecar(path)}; recreate it with `distill fid stats`")
  try:
    with open(_sidecar(path)) as f:
      metadata = json.load(f)
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise UserError(f"statistics {path} cannot be read ({type(e).__name__}: {e})") from None
  if metadata.get("format_version") != STATS_FORMAT or not {"mu", "sigma", "n"} <= set(arrays):
    raise UserError(f"{path} is not a statistics file of format {STATS_FORMAT}")
  return Statistics(arrays["mu"], arrays["sigma"], int(arrays["n"]), metadata, arrays.get("features"),
                    arrays.get("class_counts"))


def check_compatible(a: dict, b: dict) -> None:
  """Refuse to compare statistics computed in different feature spaces or with different conventions."""
  differ = [f"{k} ({a.get(k)!r} vs {b.get(k)!r})" for k in COMPARED_KEYS if a.get(k) != b.get(k)]
  if differ:
    raise UserError(f"statistics of {a.get('dataset')} and {b.get('dataset')} are not comparable: they differ in "
                    + ", ".join(differ))


def reference_statistics(ref: str, extractor: FeatureExtractor, num: int | None = None, seed: int = 0) -> Statistics:
  """Reference statistics from a data source (`npz:`, `tfds:`) or a statistics file written by `distill fid stats`."""
  from distill.data import SCHEMES

  if ref.split(":")[0] in SCHEMES:
    return compute_statistics(extractor, source_stream(ref, num, seed), ref)
  stats = load_statistics(ref)
  check_compatible(extractor.metadata, stats.metadata)
  return stats


# ----- metrics ----------------------------------------------------------------------------------------------------


def compare(generated: Statistics, reference: Statistics, *, exact: bool = True, k: int = 3,
            kid_subsets: int = 100, kid_subset_size: int = 1000) -> dict:
  """FID (scipy sqrtm when `exact`, else the eigh path), precision/recall (k-NN) and KID on the kept features, and
  the classifier's class histogram / accuracy on the generated samples when available."""
  check_compatible(generated.metadata, reference.metadata)
  distance = frechet_distance if exact else frechet_distance_eigh
  out = {"fid": float(distance(generated.mu, generated.sigma, reference.mu, reference.sigma)),
         "num_generated": generated.n, "num_reference": reference.n}
  if generated.features is not None and reference.features is not None:
    n = min(len(generated.features), len(reference.features))
    if n > k:
      out.update(precision_recall(reference.features[:n], generated.features[:n], k=k))
    if n >= 2:
      kid = kernel_inception_distance(reference.features[:n], generated.features[:n], num_subsets=kid_subsets,
                                      subset_size=kid_subset_size)
      out.update(kid)
  if generated.class_counts is not None:
    out["class_histogram"] = [int(c) for c in generated.class_counts]
    if generated.class_correct is not None:
      out["class_accuracy"] = generated.class_correct / generated.n
  return out


class TrainingFID:
  """In-training FID of the sampled group's EMA parameters: the same `num` samples' noise every time (indices
  0..num-1), features from `features`, the eigh Fréchet path, reference computed once. `metric` names the value
  that picks the best checkpoint."""

  metric = "fid"

  def __init__(self, features: str, ref: str, num: int, steps: int | None = None):
    from distill.evaluation.features import make_features

    self.extractor = make_features(features)
    self.reference = reference_statistics(ref, self.extractor)
    self.num, self.steps = num, steps

  def __call__(self, generator, params, key) -> dict:
    from distill.images import to_uint8
    from samplers.generator import default_labels

    def stream():
      for start in range(0, self.num, CHUNK):
        n = min(CHUNK, self.num - start)
        indices = np.arange(start, start + n)
        labels = default_labels(indices, generator.num_classes) if generator.num_classes else None
        x = generator.generate(params, key, n, self.steps, labels, first_index=start)
        yield to_uint8(x), labels

    generated = compute_statistics(self.extractor, stream(), "training samples")
    return compare(generated, self.reference, exact=False, kid_subsets=10)

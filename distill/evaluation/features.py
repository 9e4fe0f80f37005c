"""Feature extractors for FID-style metrics: uint8 NHWC images -> float32 features, batched and sharded over devices.

`make_features(spec)` accepts
  'inception'                 pytorch-fid's FID Inception-v3 pool3 (2048-d), weights from DISTILL_INCEPTION_WEIGHTS
                              or ~/.cache/distill/inception_fid.npz (see `distill fid convert-weights`);
  'inception:<weights.npz>'   the same with an explicit weights file;
  'classifier:<folder>'       penultimate activations of a classifier from `distill train-classifier`, which also
                              predicts classes (for class histograms and conditional accuracy).
Each extractor carries `metadata` (which network and weights, resize mode, dimension, sample quantisation); it is
stored with every statistics file so that statistics from different feature spaces are never compared. Extraction
runs at float32 matmul precision on every backend.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from distill.errors import UserError

# Generated samples are quantised exactly as EDM does before any feature network sees them (evaluation/plots.py).
QUANTIZATION = "edm-round-uint8"


class FeatureExtractor:
  """`extractor(images)` -> {'features': float32 (N, dim), and 'logits' for classifiers}.

  The batch is split over every device of `mesh` (default: all devices on one axis); the last batch is zero-padded
  to a multiple of the device count and the padded rows are dropped, so results do not depend on the device count.
  """

  def __init__(self, model: nnx.Module, apply: Callable, metadata: dict, input_shape=None, batch_size: int = 200,
               mesh=None):
    self.metadata = {**metadata, "quantization": QUANTIZATION}
    self.input_shape = None if input_shape is None else tuple(input_shape)
    self.mesh = mesh if mesh is not None else jax.make_mesh(
        (jax.device_count(),), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
    self.batch_sharding = NamedSharding(self.mesh, P(self.mesh.axis_names))
    self.batch_size = max(self.mesh.size, batch_size // self.mesh.size * self.mesh.size)
    graphdef, state = nnx.split(model)
    self._state = jax.device_put(state, NamedSharding(self.mesh, P()))

    def run(state, images):
      with jax.default_matmul_precision("float32"):
        return apply(nnx.merge(graphdef, state), images)

    self._fn = jax.jit(run, out_shardings=self.batch_sharding)

  @property
  def dim(self) -> int:
    return int(self.metadata["dim"])

  def _check(self, images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
      raise UserError(f"feature extraction needs uint8 NHWC images, got {images.dtype} {images.shape}")
    if self.input_shape is not None and images.shape[1:] != self.input_shape:
      raise UserError(f"{self.metadata['extractor']} features need images of shape {self.input_shape}, "
                      f"got {images.shape[1:]}")

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    from distill.sharding import to_host

    images = np.asarray(images)
    self._check(images)
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      padded_len = -(-len(chunk) // self.mesh.size) * self.mesh.size
      padded = np.concatenate([chunk, np.zeros((padded_len - len(chunk),) + chunk.shape[1:], np.uint8)])
      batch = jax.make_array_from_callback(padded.shape, self.batch_sharding, lambda i: padded[i])
      out.append({k: to_host(v)[:len(chunk)] for k, v in self._fn(self._state, batch).items()})
    if not out:
      return {"features": np.zeros((0, self.dim), np.float32)}
    return {k: np.concatenate([o[k] for o in out]).astype(np.float32) for k in out[0]}


def inception_features(weights_path: str | None = None, batch_size: int = 200, mesh=None) -> FeatureExtractor:
  """pytorch-fid's FID Inception-v3 pool3 features of uint8 images resized to 299x299 (bilinear, no antialias)."""
  from distill.evaluation.inception_weights import load_inception
  from models.inception import preprocess

  model, weights_meta = load_inception(weights_path)
  metadata = {"extractor": "inception-v3-fid", "weights_sha256": weights_meta["weights_sha256"],
              "resize": "bilinear-299-no-antialias", "dim": 2048}
  return FeatureExtractor(model, lambda m, images: {"features": m(preprocess(images))}, metadata,
                          batch_size=batch_size, mesh=mesh)


def classifier_features(path: str, batch_size: int = 1000, mesh=None) -> FeatureExtractor:
  """Penultimate activations and logits of a saved feature classifier (images at its native size, no resize)."""
  from distill.evaluation.classifier import load_classifier

  model, meta = load_classifier(path)

  def apply(m, images):
    features, logits = m(jnp.asarray(images, jnp.float32) / 127.5 - 1.0)
    return {"features": features, "logits": logits}

  metadata = {"extractor": "classifier", "weights_sha256": meta["checksum"], "resize": "none",
              "dim": meta["feature_dim"], "num_classes": meta["model"]["num_classes"],
              "trained_on": meta["data_source"], "heldout_accuracy": meta["heldout"]["accuracy"]}
  return FeatureExtractor(model, apply, metadata, input_shape=meta["model"]["input_shape"], batch_size=batch_size,
                          mesh=mesh)


def make_features(spec: str, mesh=None) -> FeatureExtractor:
  """Extractor from a spec string: 'inception', 'inception:<weights.npz>' or 'classifier:<folder>'."""
  kind, _, arg = spec.partition(":")
  if kind == "inception":
    return inception_features(arg or None, mesh=mesh)
  if kind == "classifier":
    if not arg:
      raise UserError("--features classifier:<folder> needs the folder written by `distill train-classifier`")
    return classifier_features(arg, mesh=mesh)
  raise UserError(f"unknown feature extractor {spec!r}; use inception, inception:<weights.npz> or "
                  "classifier:<folder>")

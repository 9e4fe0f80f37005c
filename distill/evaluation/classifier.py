"""The feature classifier for domain-specific FID: `train_classifier` (the `distill train-classifier` command),
`save_classifier` and `load_classifier`.

A saved classifier is a folder:
  classifier.json  architecture, input shape, classes, training data and budget, held-out accuracy, SHA-256 of the
                   parameters;
  params.npz       the parameters under '/'-joined names.
It is written to a temporary folder and renamed into place. Images are uint8 NHWC; the model sees x / 127.5 - 1.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, traverse_util

from distill.errors import UserError
from models.classifier import Classifier

FORMAT_VERSION = 1
META_FILE = "classifier.json"
PARAMS_FILE = "params.npz"


def _to_float(images) -> jax.Array:
  return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def _labelled_images(data_source: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
  from distill import data as data_lib

  source = data_lib.make_source(data_source, seed)
  if source.spec.kind != "images" or not source.spec.num_classes:
    raise UserError(f"{data_source} is not a labelled image source (found {source.spec.kind}, "
                    f"{source.spec.num_classes} classes); the classifier needs uint8 images with labels")
  examples = source.examples()
  return examples["x"], examples["label"], source.spec.num_classes


def predict(model: Classifier, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
  """Predicted labels (N,) int32 for uint8 images (N, H, W, C)."""
  logits_fn = nnx.jit(lambda m, x: jnp.argmax(m(_to_float(x))[1], axis=-1))
  return np.concatenate([np.asarray(logits_fn(model, images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)]).astype(np.int32)


def train_classifier(data_source: str, out: str, *, steps: int = 2000, batch_size: int = 128,
                     learning_rate: float = 2e-3, holdout: int = 1000, seed: int = 0, log=print) -> dict:
  """Train a Classifier on `data_source` minus `holdout` held-out examples (a seeded random subset), report the
  held-out accuracy and save it to `out`. Returns the saved metadata."""
  images, labels, num_classes = _labelled_images(data_source, seed)
  if not 0 < holdout < len(images):
    raise UserError(f"holdout={holdout} must be between 1 and {len(images) - 1} for {len(images)} examples")
  order = np.random.default_rng(seed).permutation(len(images))
  held, train = order[:holdout], order[holdout:]
  model = Classifier(images.shape[1:], num_classes, rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, x, y):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(_to_float(x))[1], y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  rng = np.random.default_rng([seed, 1])
  start, losses = time.time(), []
  for step in range(steps):
    idx = train[rng.integers(0, len(train), batch_size)]
    losses.append(train_step(model, optimizer, images[idx], labels[idx]))
    if (step + 1) % max(1, steps // 5) == 0 or step + 1 == steps:
      log(f"classifier step {step + 1}/{steps} | loss {float(np.mean(jax.device_get(losses))):.4f} | "
          f"{(step + 1) / (time.time() - start):.1f} steps/s")
      losses = []
  accuracy = float(np.mean(predict(model, images[held]) == labels[held]))
  log(f"held-out accuracy {accuracy:.4f} on {holdout} examples")
  meta = {
      "format_version": FORMAT_VERSION,
      "model": {"input_shape": [int(d) for d in images.shape[1:]], "num_classes": int(num_classes)},
      "feature_dim": int(model.hidden.out_features),
      "data_source": data_source,
      "train": {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
                "num_train": int(len(train))},
      "heldout": {"num": int(holdout), "accuracy": accuracy},
  }
  return save_classifier(out, model, meta)


def _flat_params(model: Classifier) -> dict:
  """'/'-joined parameter name -> leaf (an array, or a ShapeDtypeStruct for an abstract model)."""
  pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return {"/".join(map(str, k)): v for k, v in traverse_util.flatten_dict(pure).items()}


def save_classifier(out: str, model: Classifier, meta: dict) -> dict:
  """Write the classifier folder atomically; returns the metadata with its parameter checksum."""
  from samplers.export import atomic_folder, params_checksum

  flat = {k: np.asarray(v) for k, v in _flat_params(model).items()}
  meta = {**meta, "checksum": params_checksum(flat)}
  with atomic_folder(out, prefix=".classifier-") as tmp:
    np.savez(os.path.join(tmp, PARAMS_FILE), **flat)
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
  return meta


def load_classifier(path: str) -> tuple[Classifier, dict]:
  """Load a classifier folder written by `distill train-classifier`; verifies shapes and the checksum."""
  from samplers.export import params_checksum

  meta_path = os.path.join(path, META_FILE)
  if not os.path.exists(meta_path):
    raise UserError(f"{path} is not a saved classifier (no {META_FILE}); create one with "
                    f"`distill train-classifier --data npz:IMAGES.npz --out {path}`")
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    with np.load(os.path.join(path, PARAMS_FILE)) as f:
      flat = {k: f[k] for k in f.files}
  except (OSError, ValueError, json.JSONDecodeError) as e:
    raise UserError(f"classifier {path} cannot be read ({type(e).__name__}: {e})") from None
  if meta.get("format_version") != FORMAT_VERSION:
    raise UserError(f"classifier {path}: format {meta.get('format_version')} is not supported")
  if params_checksum(flat) != meta.get("checksum"):
    raise UserError(f"classifier {path}: parameter checksum mismatch (the files are corrupt or were modified)")
  model = nnx.eval_shape(lambda: Classifier(**meta["model"], rngs=nnx.Rngs(0)))
  expected = _flat_params(model)
  for name, leaf in expected.items():
    if name not in flat:
      raise UserError(f"classifier {path}: parameter {name} is missing")
    if flat[name].shape != tuple(leaf.shape):
      raise UserError(f"classifier {path}: parameter {name} has shape {flat[name].shape}, "
                      f"expected {tuple(leaf.shape)}")
  nested = traverse_util.unflatten_dict({tuple(_key(p) for p in k.split("/")): v for k, v in flat.items()})
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, nested)
  nnx.update(model, state)
  return model, meta


def _key(part: str):
  """Path components that were list indices come back as ints (nnx.List children are indexed)."""
  return int(part) if part.isdigit() else part

"""Data sources selected by a spec string, deterministic per (seed, step).

Specs:
  ``toy:<name>``           2-D toy distribution, an infinite stream (see ``TOY_NAMES``).
  ``toyset:<name>[:n]``    n stored points of a mixture toy labelled by component (8gaussians, rings).
  ``npz:<path>``           ``.npz`` file with ``points`` (float (N, D)) or ``images``
                           (uint8 (N, H, W) or (N, H, W, C)), optional integer ``labels`` (N,).
  ``tfds:<name>[:split]``  tensorflow-datasets image dataset loaded into memory (split "train").
  ``pairs:<folder>``       teacher pairs from `distill pairs` (distill/pairs.py): batches also carry the pair's
                           starting ``'noise'``; images are the teacher's float samples (not quantised).

Batches are dicts ``{'x': float32 (B, *shape), 'label': int32 (B,)}``; ``'label'`` is present
only when ``spec.num_classes > 0``. Images are NHWC float32 in [-1, 1] (``x / 127.5 - 1``).
Batch contents depend only on (seed, step, batch_size), so a resumed run sees the same batches
and each process can compute just its own rows of the global batch.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from typing import Callable

import numpy as np

from distill.images import to_float

SCHEMES = ("toy", "toyset", "npz", "tfds", "pairs")
TOY_RANGE = (-4.0, 4.0)  # nominal range of every toy (Gaussian noise tails aside)
_FLIP_STREAM, _EVAL_STREAM, _TOYSET_STREAM = 1, 2, 3
_TFDS_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a model needs to know about the data.

  kind: "points" or "images". shape: per-example shape, (D,) or (H, W, C).
  num_classes: 0 when unlabelled. data_range: value range of batch['x'] ((-1, 1) for images).
  """

  kind: str
  shape: tuple[int, ...]
  num_classes: int
  data_range: tuple[float, float]


def _rng(*key: int, stream: int = 0) -> np.random.Generator:
  """``default_rng(list(key))`` for stream 0; other streams are disjoint from all of those."""
  spawn_key = (stream,) if stream else ()
  return np.random.default_rng(np.random.SeedSequence([int(k) for k in key], spawn_key=spawn_key))


def _gaussian_noise(rng: np.random.Generator, n: int, std: float) -> np.ndarray:
  return std * rng.standard_normal((n, 2))


def _polar(radius: np.ndarray, angle: np.ndarray) -> np.ndarray:
  return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _eight_gaussians_labelled(rng, n):
  """(8 Gaussians (std 0.2) on a circle of radius 2, per-coordinate std ~1.4; each point's mode 0..7)."""
  mode = rng.integers(0, 8, n)
  return _polar(np.full(n, 2.0), mode * (np.pi / 4)) + _gaussian_noise(rng, n, 0.2), mode


def _eight_gaussians(rng, n):
  return _eight_gaussians_labelled(rng, n)[0]


def _moons(rng, n):
  """Two interleaved half circles, centred, scaled by 2 (noise-free in [-3, 3] x [-1.5, 1.5]), noise std 0.2."""
  t = np.pi * rng.random(n)
  upper = (rng.random(n) < 0.5)[:, None]
  outer = np.stack([np.cos(t), np.sin(t)], axis=1)
  inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
  return 2.0 * (np.where(upper, outer, inner) - [0.5, 0.25]) + _gaussian_noise(rng, n, 0.2)


def _checkerboard(rng, n):
  """Uniform on the 8 'black' unit squares of a 4x4 board on [-2, 2]^2; std ~1.15."""
  x = 4.0 * rng.random(n) - 2.0
  y = rng.random(n) + 2.0 * rng.integers(-1, 1, n) + np.floor(x) % 2
  return np.stack([x, y], axis=1)


def _spirals(rng, n):
  """Two interleaved spiral arms reaching radius pi, noise std 0.1; std ~1.6."""
  t = 3.0 * np.pi * np.sqrt(rng.random(n))
  arm = np.where(rng.random(n) < 0.5, 1.0, -1.0)
  pts = (arm * t / 3.0)[:, None] * np.stack([-np.cos(t), np.sin(t)], axis=1)
  return pts + _gaussian_noise(rng, n, 0.1)


def _swissroll(rng, n):
  """2-D swiss roll t (cos t, sin t) / 5, t in [1.5 pi, 4.5 pi], noise std 0.1; std ~1.4."""
  t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
  return _polar(t / 5.0, t) + _gaussian_noise(rng, n, 0.1)


def _rings_labelled(rng, n):
  """(Four equally likely concentric rings of radius 0.75, 1.5, 2.25, 3, noise std 0.08, std ~1.45; each point's
  ring 0..3)."""
  ring = rng.integers(1, 5, n)
  return _polar(0.75 * ring, 2.0 * np.pi * rng.random(n)) + _gaussian_noise(rng, n, 0.08), ring - 1


def _rings(rng, n):
  return _rings_labelled(rng, n)[0]


_TOYS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
    "swissroll": _swissroll,
    "rings": _rings,
}
TOY_NAMES = tuple(_TOYS)
_LABELLED_TOYS = {"8gaussians": (_eight_gaussians_labelled, 8), "rings": (_rings_labelled, 4)}
TOYSET_SIZE = 50_000


def _toyset(rest: str, seed: int) -> "ArraySource":
  """``toyset:<name>[:n]``: n (default 50000) stored points of a toy with each point's component as its label
  (8gaussians: mode 0..7, rings: ring 0..3), drawn from default_rng([seed]) of a stream of its own."""
  name, _, n = rest.partition(":")
  if name not in _LABELLED_TOYS:
    raise ValueError(f"unknown labelled toy {name!r}; valid: {', '.join(_LABELLED_TOYS)}")
  draw, classes = _LABELLED_TOYS[name]
  x, labels = draw(_rng(seed, stream=_TOYSET_STREAM), int(n or TOYSET_SIZE))
  return ArraySource(x.astype(np.float32), labels.astype(np.int32), classes, seed)


def epoch_permuted(positions: np.ndarray, n: int, *key: int) -> np.ndarray:
  """Index into n examples of each global position g: position g % n of epoch g // n's permutation
  _rng(*key, epoch)."""
  epoch, pos = np.divmod(positions, n)
  idx = np.empty_like(pos)
  for e in np.unique(epoch):
    sel = epoch == e
    idx[sel] = _rng(*key, e).permutation(n)[pos[sel]]
  return idx


class DataSource(abc.ABC):
  """A deterministic stream of batches; see the module docstring for the batch format."""

  spec: DataSpec
  pair_metadata: dict | None = None  # the pair store's metadata for `pairs:` sources

  def global_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
    """The whole batch for `step`."""
    return self.local_batch(step, batch_size, 0, 1)

  def local_batch(self, step: int, batch_size: int, process_index: int,
                  process_count: int) -> dict[str, np.ndarray]:
    """Rows [p*b/P, (p+1)*b/P) of ``global_batch(step, b)`` for process p of P."""
    if batch_size <= 0 or batch_size % process_count:
      raise ValueError(f"batch_size {batch_size} must be positive and divisible by "
                       f"process_count {process_count}")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    rows = batch_size // process_count
    return self.rows(step, batch_size, process_index * rows, (process_index + 1) * rows)

  def rows(self, step: int, batch_size: int, start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows [start, stop) of the global batch of `batch_size` at `step`."""
    return self._rows(step, batch_size, start, stop)

  @abc.abstractmethod
  def _rows(self, step: int, batch_size: int, start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows [start, stop) of the global batch of `batch_size` at `step`."""

  @abc.abstractmethod
  def sample(self, n: int, seed: int) -> dict[str, np.ndarray]:
    """`n` examples for evaluation, drawn from `seed` independently of the training stream."""


class ToySource(DataSource):
  """Infinite 2-D toy stream; batch at `step` is drawn from ``default_rng([seed, step])``."""

  def __init__(self, name: str, seed: int):
    if name not in _TOYS:
      raise ValueError(f"unknown toy {name!r}; valid toys: {', '.join(TOY_NAMES)}")
    self._draw = _TOYS[name]
    self._seed = seed
    self.spec = DataSpec("points", (2,), 0, TOY_RANGE)

  def _rows(self, step, batch_size, start, stop):
    return {"x": self._draw(_rng(self._seed, step), batch_size)[start:stop].astype(np.float32)}

  def sample(self, n, seed):
    return {"x": self._draw(_rng(seed, stream=_EVAL_STREAM), n).astype(np.float32)}


class ArraySource(DataSource):
  """In-memory examples visited in epoch-wise permutations ``default_rng([seed, epoch])``.

  Global example g = step * batch_size + i is position g % N of epoch g // N's permutation.
  `data` is uint8 NHWC images (converted per batch to [-1, 1]), float32 NHWC images already in [-1, 1], or
  float32 (N, D) points. `extra` arrays (e.g. the noise of teacher pairs) are gathered with the same indices.
  With `flip`, images (and image-shaped extras) are flipped horizontally with probability 1/2, decided per row of
  the global batch from (seed, step).
  """

  def __init__(self, data: np.ndarray, labels: np.ndarray | None, num_classes: int, seed: int,
               flip: bool = False, extra: dict[str, np.ndarray] | None = None):
    self._uint8 = data.dtype == np.uint8
    images = self._uint8 or data.ndim == 4
    if flip and not images:
      raise ValueError("flip=True is only valid for image data, not points")
    if len(data) == 0:
      raise ValueError("data source contains no examples")
    self._data, self._labels, self._seed, self._flip = data, labels, seed, flip
    self._extra = dict(extra or {})
    data_range = (-1.0, 1.0) if images else (float(data.min()), float(data.max()))
    self.spec = DataSpec("images" if images else "points", tuple(int(d) for d in data.shape[1:]), num_classes,
                         data_range)

  def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Examples `idx` as a batch (images converted to [-1, 1], extras and labels gathered alike), unflipped."""
    raw = self._data[idx]
    batch = {"x": to_float(raw) if self._uint8 else raw}
    batch.update({k: v[idx] for k, v in self._extra.items()})
    if self._labels is not None:
      batch["label"] = self._labels[idx].astype(np.int32)
    return batch

  def _rows(self, step, batch_size, start, stop):
    idx = epoch_permuted(step * batch_size + np.arange(start, stop, dtype=np.int64), len(self._data), self._seed)
    batch = self.gather(idx)
    if self._flip:
      flips = _rng(self._seed, step, stream=_FLIP_STREAM).random(batch_size)[start:stop] < 0.5
      for name in ["x", *self._extra]:
        batch[name][flips] = batch[name][flips, :, ::-1]
    return batch

  def extra(self, name: str) -> np.ndarray | None:
    """The stored extra array `name` (e.g. a teacher pair's 'noise'), or None."""
    return self._extra.get(name)

  @property
  def flips(self) -> bool:
    return self._flip

  def examples(self) -> dict[str, np.ndarray]:
    """Every example as stored, in file order: {'x': uint8 NHWC images or float32 points, 'label': int32 when
    labelled}. Used where the exact stored pixels matter (FID reference statistics, classifier training)."""
    out = {"x": self._data}
    if self._labels is not None:
      out["label"] = self._labels.astype(np.int32)
    return out

  def sample(self, n, seed):
    n_data = len(self._data)
    return self.gather(_rng(seed, stream=_EVAL_STREAM).choice(n_data, n, replace=n > n_data))


def _check_labels(labels: np.ndarray, n: int) -> int:
  """Validates integer labels of length n; returns the number of classes (max + 1)."""
  if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
    raise ValueError(f"labels must be an integer (N,) array, got {labels.dtype} {labels.shape}")
  if len(labels) != n:
    raise ValueError(f"labels length {len(labels)} does not match {n} examples")
  if n and labels.min() < 0:
    raise ValueError("labels must be non-negative")
  return int(labels.max()) + 1 if n else 0


def _load_npz(path: str, seed: int, flip: bool) -> ArraySource:
  if not os.path.isfile(path):
    raise ValueError(f"npz file not found: {path}")
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  if ("points" in arrays) == ("images" in arrays):
    raise ValueError(f"{path} must contain exactly one of 'points' or 'images'; "
                     f"found keys {sorted(arrays)}")
  if "points" in arrays:
    data = arrays["points"]
    if not np.issubdtype(data.dtype, np.floating) or data.ndim != 2:
      raise ValueError(f"'points' must be a float (N, D) array, got {data.dtype} {data.shape}")
    data = data.astype(np.float32)
  else:
    data = arrays["images"]
    if data.dtype != np.uint8 or data.ndim not in (3, 4):
      raise ValueError(f"'images' must be uint8 (N, H, W) or (N, H, W, C), "
                       f"got {data.dtype} {data.shape}")
    if data.ndim == 3:
      data = data[..., None]
  labels = arrays.get("labels")
  num_classes = 0 if labels is None else _check_labels(labels, len(data))
  return ArraySource(data, labels, num_classes, seed, flip)


def _load_tfds(name: str, split: str, seed: int, flip: bool, data_dir: str | None,
               download: bool) -> ArraySource:
  import tensorflow_datasets as tfds  # heavy: imported only when needed

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"unknown tfds dataset {name!r}") from e
  if not builder.is_prepared():
    if not download:
      raise ValueError(f"tfds dataset {name!r} is not prepared in {builder.data_dir} "
                       "and tfds_download=False")
    builder.download_and_prepare()
  features = builder.info.features
  if "image" not in features:
    raise ValueError(f"tfds dataset {name!r} has no 'image' feature; found {list(features)}")
  keys = [k for k in ("image", "label") if k in features]
  # Finite chunks instead of batch_size=-1, which needs known split sizes.
  ds = builder.as_dataset(split=split).map(lambda ex: {k: ex[k] for k in keys})
  chunks = list(tfds.as_numpy(ds.batch(_TFDS_CHUNK)))
  if not chunks:
    raise ValueError(f"tfds dataset {name!r} split {split!r} contains no examples")
  images = np.concatenate([c["image"] for c in chunks])
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"tfds dataset {name!r}: expected uint8 NHWC images, "
                     f"got {images.dtype} {images.shape}")
  if "label" not in keys:
    return ArraySource(images, None, 0, seed, flip)
  labels = np.concatenate([c["label"] for c in chunks])
  _check_labels(labels, len(images))
  return ArraySource(images, labels, int(features["label"].num_classes), seed, flip)


def _load_pairs(path: str, seed: int, flip: bool) -> ArraySource:
  from distill import pairs  # local: pairs imports generation (jax) only when generating

  meta, arrays = pairs.load_pairs(path)
  source = ArraySource(arrays["x"], arrays.get("label"), int(meta["data"]["num_classes"]), seed, flip,
                       extra={"noise": arrays["noise"]})
  source.pair_metadata = meta
  return source


def make_source(spec: str, seed: int, *, flip: bool = False, tfds_data_dir: str | None = None,
                tfds_download: bool = True) -> DataSource:
  """Builds the source for ``toy:<name>``, ``npz:<path>`` or ``tfds:<name>[:split]``."""
  scheme, _, rest = spec.partition(":")
  if scheme in ("toy", "toyset"):
    if flip:
      raise ValueError("flip=True is only valid for image data, not toy points")
    return ToySource(rest, seed) if scheme == "toy" else _toyset(rest, seed)
  if scheme == "npz":
    return _load_npz(rest, seed, flip)
  if scheme == "tfds":
    name, _, split = rest.partition(":")
    return _load_tfds(name, split or "train", seed, flip, tfds_data_dir, tfds_download)
  if scheme == "pairs":
    return _load_pairs(rest, seed, flip)
  raise ValueError(f"unknown data scheme in {spec!r}; valid schemes: {', '.join(SCHEMES)}")

"""Fitting a multi-student router (distill/stacked.py) from the config's `multi_student` section and the data.

Partitions (spec adversarial_multistudent.md sections 6.1 and 8.2), all into K equal parts:
- 'blocks': consecutive class blocks, class c -> c // (C / K) (MSD's best on ImageNet-64);
- 'table': a given class -> student list (multi_student.table);
- 'kmeans': balanced k-means on class embeddings (each class's mean example), C / K classes per student: Lloyd
  iterations from a k-means++ start, each assignment the exact minimum-cost balanced one (a linear assignment of the
  classes to C / K copies of every centroid);
- 'noise': for unconditional data, K = 2^m parts of the generator's noise space: the half-spaces of the m noise
  directions that move the teacher's output most (the top right-singular vectors of the least-squares linear map
  from a pair's noise to its teacher sample), read from teacher pairs.
"""

from __future__ import annotations

import numpy as np

from distill.data import ArraySource
from distill.errors import UserError
from distill.stacked import Router

PARTITIONS = ("blocks", "table", "kmeans", "noise")
MULTI_STUDENT_KEYS = ("k", "partition", "table", "shared", "full_set", "kmeans_iters", "layout")


def check_section(section) -> None:
  unknown = sorted(set(section) - set(MULTI_STUDENT_KEYS))
  if unknown:
    raise UserError(f"unknown multi_student key(s) {unknown}; valid: {', '.join(MULTI_STUDENT_KEYS)}")
  if section.get("partition", "blocks") not in PARTITIONS:
    raise UserError(f"multi_student.partition must be one of {', '.join(PARTITIONS)}, got {section.partition!r}")


def fit_router(section, source: ArraySource, seed: int) -> Router:
  """The router of `section` (multi_student.k students, multi_student.partition) for the data of `source`."""
  check_section(section)
  k, kind = int(section.k), section.get("partition", "blocks")
  if kind == "noise":
    return Router("noise", k, directions=noise_directions(source, k))
  classes = source.spec.num_classes
  if not classes:
    raise UserError(f"multi_student.partition={kind!r} splits classes, but the data has no labels; use "
                    "partition='noise' (on teacher pairs) for unconditional data")
  if kind == "table":
    table = [int(s) for s in section.get("table", ())]
    if len(table) != classes:
      raise UserError(f"multi_student.table has {len(table)} entries for {classes} classes")
    return _class_router(k, table)
  if classes % k:
    raise UserError(f"multi_student.k={k} does not divide the {classes} classes evenly")
  if kind == "blocks":
    return _class_router(k, [c // (classes // k) for c in range(classes)])
  embeddings = class_embeddings(source.examples(), classes)
  return _class_router(k, balanced_kmeans(embeddings, k, seed, int(section.get("kmeans_iters", 20))))


def _class_router(k: int, table) -> Router:
  try:
    return Router("classes", k, table=tuple(table))
  except ValueError as e:
    raise UserError(f"multi_student: {e}") from None


def class_embeddings(examples: dict, classes: int) -> np.ndarray:
  """(C, D) float64: the mean of each class's examples, flattened."""
  x = np.asarray(examples["x"], np.float64).reshape(len(examples["x"]), -1)
  return np.stack([x[examples["label"] == c].mean(axis=0) for c in range(classes)])


def balanced_assignment(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
  """Each point -> a centroid, every centroid taking exactly len(points) / len(centroids) points, with the least
  total squared distance (a linear assignment of the points to that many copies of each centroid)."""
  from scipy.optimize import linear_sum_assignment

  k, capacity = len(centroids), len(points) // len(centroids)
  d = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
  rows, cols = linear_sum_assignment(np.repeat(d, capacity, axis=1))
  assign = np.empty(len(points), int)
  assign[rows] = cols // capacity
  return assign


def balanced_kmeans(points: np.ndarray, k: int, seed: int, iters: int = 20) -> list[int]:
  """Balanced k-means (see the module docstring); clusters renumbered by their smallest member, so the result does
  not depend on the initial order of the centroids."""
  rng = np.random.default_rng(seed)
  centroids = [points[rng.integers(len(points))]]
  while len(centroids) < k:  # k-means++
    d = np.min([((points - c) ** 2).sum(-1) for c in centroids], axis=0)
    centroids.append(points[rng.choice(len(points), p=d / d.sum())] if d.sum() > 0 else points[len(centroids)])
  centroids = np.array(centroids)
  assign = balanced_assignment(points, centroids)
  for _ in range(iters):
    centroids = np.stack([points[assign == c].mean(axis=0) for c in range(k)])
    new = balanced_assignment(points, centroids)
    if np.array_equal(new, assign):
      break
    assign = new
  order = {c: i for i, c in enumerate(dict.fromkeys(assign.tolist()))}
  return [order[c] for c in assign.tolist()]


def noise_directions(source: ArraySource, k: int) -> tuple:
  """m = log2(k) orthonormal noise directions (see the module docstring), each with a positive first non-zero
  entry so the result is unique."""
  m = int(round(np.log2(k)))
  if k < 1 or 2 ** m != k:
    raise UserError(f"a noise partition splits the noise space into 2^m half-space cells: multi_student.k={k} is "
                    "not a power of 2")
  noise = source.extra("noise")
  if noise is None:
    raise UserError("multi_student.partition='noise' reads the noise of teacher pairs: train on a pairs stage "
                    "(or a pairs: source)")
  z = noise.reshape(len(noise), -1).astype(np.float64)
  x = np.asarray(source.examples()["x"], np.float64).reshape(len(z), -1)
  coef, *_ = np.linalg.lstsq(z - z.mean(0), x - x.mean(0), rcond=None)  # (Dz, Dx): x ~ z @ coef
  u, _, _ = np.linalg.svd(coef, full_matrices=False)  # noise-side singular vectors are u's columns
  directions = []
  for d in u[:, :m].T:
    d = d / np.linalg.norm(d)
    directions.append(tuple(float(v) for v in (d if d[np.flatnonzero(np.abs(d) > 1e-12)[0]] > 0 else -d)))
  return tuple(directions)

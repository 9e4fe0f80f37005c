import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import numpy as np
import pytest

from distill import data

MNIST = "/work/shared/data/mnist10k.npz"


def _write(tmp_path, name="d.npz", **arrays):
  path = tmp_path / name
  np.savez(path, **arrays)
  return f"npz:{path}"


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("name", data.TOY_NAMES)
def test_toy_shape_determinism_and_scale(name):
  src = data.make_source(f"toy:{name}", seed=0)
  assert src.spec == data.DataSpec("points", (2,), 0, data.TOY_RANGE)
  b = src.global_batch(3, 2000)
  assert b.keys() == {"x"} and b["x"].shape == (2000, 2) and b["x"].dtype == np.float32
  _assert_same(b, data.make_source(f"toy:{name}", seed=0).global_batch(3, 2000))
  assert not np.allclose(b["x"], src.global_batch(4, 2000)["x"])
  assert not np.allclose(b["x"], data.make_source(f"toy:{name}", seed=1).global_batch(3, 2000)["x"])
  assert np.abs(b["x"]).max() < 4.0
  assert 0.7 < b["x"].std() < 2.0
  s = src.sample(500, seed=3)["x"]
  assert s.shape == (500, 2) and s.dtype == np.float32
  np.testing.assert_array_equal(s, src.sample(500, seed=3)["x"])


def test_toy_local_batches_concatenate():
  src = data.make_source("toy:moons", seed=5)
  g = src.global_batch(7, 16)
  for procs in (2, 4):
    parts = [src.local_batch(7, 16, p, procs)["x"] for p in range(procs)]
    np.testing.assert_array_equal(np.concatenate(parts), g["x"])


def test_npz_points(tmp_path):
  pts = np.random.default_rng(0).normal(size=(10, 3))
  src = data.make_source(_write(tmp_path, points=pts), seed=0)
  pts = pts.astype(np.float32)
  assert src.spec == data.DataSpec("points", (3,), 0, (float(pts.min()), float(pts.max())))
  b = src.global_batch(0, 10)
  assert b.keys() == {"x"} and b["x"].dtype == np.float32
  # One batch of N examples is exactly one epoch: a permutation of the data.
  np.testing.assert_array_equal(np.sort(b["x"], axis=0), np.sort(pts, axis=0))


def test_npz_points_with_labels(tmp_path):
  pts = np.arange(12.0).reshape(6, 2)
  src = data.make_source(_write(tmp_path, points=pts, labels=np.array([0, 1, 2, 0, 1, 4])), seed=0)
  assert src.spec.num_classes == 5
  b = src.global_batch(1, 4)
  assert b["label"].dtype == np.int32 and b["label"].shape == (4,)


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("with_labels", [False, True])
def test_npz_images(tmp_path, channels, with_labels):
  shape = (8, 4, 5) if channels is None else (8, 4, 5, channels)
  images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
  images[0] = 0
  images[1] = 255
  arrays = {"images": images}
  if with_labels:
    arrays["labels"] = np.arange(8) % 3
  src = data.make_source(_write(tmp_path, **arrays), seed=0)
  assert src.spec == data.DataSpec("images", (4, 5, channels or 1), 3 if with_labels else 0, (-1.0, 1.0))
  b = src.global_batch(0, 8)
  assert b["x"].shape == (8, 4, 5, channels or 1) and b["x"].dtype == np.float32
  assert ("label" in b) == with_labels
  ordered = np.sort(b["x"].reshape(8, -1).mean(axis=1))
  assert b["x"].min() == -1.0 and b["x"].max() == 1.0
  assert ordered[0] == -1.0 and ordered[-1] == 1.0  # the all-0 and all-255 images
  expected = images.reshape(8, -1).astype(np.float32) / 127.5 - 1.0
  np.testing.assert_allclose(ordered, np.sort(expected.mean(axis=1)), rtol=1e-6)
  if with_labels:
    assert b["label"].dtype == np.int32 and set(b["label"]) == {0, 1, 2}


def test_epoch_permutation_covers_each_example_once(tmp_path):
  n, bs = 10, 4  # batches straddle epoch boundaries
  src = data.make_source(_write(tmp_path, points=np.arange(n, dtype=np.float64)[:, None]), seed=2)
  stream = np.concatenate([src.global_batch(s, bs)["x"][:, 0] for s in range(3 * n // 2)])
  epochs = stream.reshape(-1, n)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])
  expected = np.random.default_rng([2, 1]).permutation(n)
  np.testing.assert_array_equal(epochs[1], expected)


@pytest.mark.parametrize("flip", [False, True])
def test_local_batches_concatenate_to_global(tmp_path, flip):
  images = np.random.default_rng(3).integers(0, 256, (7, 3, 4, 2), dtype=np.uint8)
  src = data.make_source(_write(tmp_path, images=images, labels=np.arange(7)), seed=4, flip=flip)
  for step in range(4):
    g = src.global_batch(step, 8)
    for procs in (2, 4):
      parts = [src.local_batch(step, 8, p, procs) for p in range(procs)]
      _assert_same({k: np.concatenate([p[k] for p in parts]) for k in g}, g)


def test_flip_flips_some_images_horizontally(tmp_path):
  images = np.random.default_rng(3).integers(0, 256, (1, 3, 4, 1), dtype=np.uint8)
  plain = data.make_source(_write(tmp_path, images=images), seed=0).global_batch(0, 64)["x"]
  flipped = data.make_source(_write(tmp_path, images=images), seed=0, flip=True).global_batch(0, 64)["x"]
  is_flipped = np.all(flipped == plain[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(is_flipped | np.all(flipped == plain, axis=(1, 2, 3)))
  assert 10 < is_flipped.sum() < 54


def test_sample_sizes(tmp_path):
  src = data.make_source(_write(tmp_path, points=np.arange(10.0)[:, None], labels=np.arange(10)), seed=0)
  small = src.sample(6, seed=1)
  assert small["x"].shape == (6, 1) and small["label"].shape == (6,)
  assert len(np.unique(small["x"])) == 6  # without replacement
  np.testing.assert_array_equal(small["x"][:, 0], small["label"])
  assert src.sample(25, seed=1)["x"].shape == (25, 1)  # with replacement
  _assert_same(small, src.sample(6, seed=1))


@pytest.mark.skipif(not os.path.exists(MNIST), reason="shared MNIST file absent")
def test_real_mnist_npz():
  src = data.make_source(f"npz:{MNIST}", seed=0, flip=True)
  assert src.spec == data.DataSpec("images", (28, 28, 1), 10, (-1.0, 1.0))
  b = src.global_batch(0, 256)
  assert b["x"].shape == (256, 28, 28, 1) and b["x"].min() == -1.0 and b["x"].max() == 1.0
  assert b["label"].dtype == np.int32 and b["label"].min() >= 0 and b["label"].max() <= 9
  np.testing.assert_array_equal(src.local_batch(0, 256, 3, 4)["x"], b["x"][192:])


@pytest.mark.parametrize("spec,shape", [("tfds:mnist", (28, 28, 1)), ("tfds:cifar10:test", (32, 32, 3))])
def test_tfds_mocked(tmp_path, spec, shape):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12):
    src = data.make_source(spec, seed=0, flip=True, tfds_data_dir=str(tmp_path))
    num_classes = tfds.builder(spec.split(":")[1], data_dir=str(tmp_path)).info.features["label"].num_classes
  assert src.spec == data.DataSpec("images", shape, num_classes, (-1.0, 1.0))
  b = src.global_batch(0, 12)
  assert b["x"].shape == (12, *shape) and b["x"].dtype == np.float32
  assert -1.0 <= b["x"].min() and b["x"].max() <= 1.0
  assert b["label"].dtype == np.int32 and 0 <= b["label"].min() and b["label"].max() < num_classes


def test_tfds_not_prepared_without_download(tmp_path):
  with pytest.raises(ValueError, match="not prepared"):
    data.make_source("tfds:mnist", seed=0, tfds_data_dir=str(tmp_path), tfds_download=False)


def test_tfds_unknown_dataset(tmp_path):
  with pytest.raises(ValueError, match="unknown tfds dataset"):
    data.make_source("tfds:no_such_dataset_xyz", seed=0, tfds_data_dir=str(tmp_path))


@pytest.mark.parametrize("arrays,match", [
    ({"foo": np.zeros(3)}, r"exactly one of 'points' or 'images'.*\['foo'\]"),
    ({"points": np.zeros((3, 2)), "images": np.zeros((3, 2, 2), np.uint8)}, "exactly one of"),
    ({"points": np.zeros((3, 2), np.int64)}, "float"),
    ({"points": np.zeros(3)}, r"\(N, D\)"),
    ({"images": np.zeros((3, 4, 4), np.float32)}, "uint8"),
    ({"images": np.zeros((3, 4), np.uint8)}, r"\(N, H, W\)"),
    ({"points": np.zeros((3, 2)), "labels": np.zeros(4, int)}, "labels length 4"),
    ({"points": np.zeros((3, 2)), "labels": np.zeros(3)}, "integer"),
    ({"points": np.zeros((0, 2))}, "no examples"),
])
def test_npz_errors(tmp_path, arrays, match):
  with pytest.raises(ValueError, match=match):
    data.make_source(_write(tmp_path, **arrays), seed=0)


def test_other_errors(tmp_path):
  with pytest.raises(ValueError, match="unknown data scheme.*toy, toyset, npz, tfds"):
    data.make_source("csv:foo", seed=0)
  with pytest.raises(ValueError, match="unknown toy 'circles'.*8gaussians"):
    data.make_source("toy:circles", seed=0)
  with pytest.raises(ValueError, match="npz file not found: .*missing.npz"):
    data.make_source(f"npz:{tmp_path}/missing.npz", seed=0)
  with pytest.raises(ValueError, match="flip"):
    data.make_source("toy:moons", seed=0, flip=True)
  with pytest.raises(ValueError, match="flip"):
    data.make_source(_write(tmp_path, points=np.zeros((3, 2))), seed=0, flip=True)
  src = data.make_source("toy:moons", seed=0)
  with pytest.raises(ValueError, match="divisible"):
    src.local_batch(0, 10, 0, 4)
  with pytest.raises(ValueError, match="process_index"):
    src.local_batch(0, 8, 4, 4)

"""FID Inception-v3: preprocessing conventions, pooling, weight conversion/loading, and parity with PyTorch.

Random weights come from numpy (He-scaled convs, random BatchNorm statistics) and are loaded through the same
writer/loader as real weights: `InceptionV3(rngs=...)` initialises ~100 differently shaped kernels eagerly, which
costs tens of seconds of compilation on CPU. The PyTorch reference is written here by hand from torchvision's
Inception3/InceptionB/InceptionD and pytorch-fid's FIDInceptionA/C/E_1/E_2 (torchvision is not needed); it is
skipped when torch is not installed.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, traverse_util

from distill.errors import UserError
from distill.evaluation import inception_weights as iw
from models.inception import avg_pool_3x3_exclude_pad, preprocess

BN_TO_TORCH = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _random_weights(shapes, seed=0):
  """Random float32 weights for every variable: He-normal conv kernels, BatchNorm affine and running statistics."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, shape in shapes.items():
    leaf = name.rsplit("/", 1)[1]
    if leaf == "kernel":
      value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:3])), shape)
    elif leaf == "scale":
      value = rng.uniform(0.5, 1.5, shape)
    elif leaf in ("bias", "mean"):
      value = rng.normal(0.0, 0.2, shape)
    else:
      value = rng.uniform(0.5, 2.0, shape)
    out[name] = value.astype(np.float32)
  return out


def _to_torch_layout(weights):
  """NNX arrays -> a pytorch-fid style state dict of numpy arrays (with fc.* and num_batches_tracked extras)."""
  sd = {"fc.weight": np.zeros((1008, 2048), np.float32), "fc.bias": np.zeros((1008,), np.float32)}
  for name, value in weights.items():
    *prefix, layer, leaf = name.split("/")
    module = ".".join(prefix)
    if layer == "conv":
      sd[f"{module}.conv.weight"] = value.transpose(3, 2, 0, 1)
    else:
      sd[f"{module}.bn.{BN_TO_TORCH[leaf]}"] = value
      sd[f"{module}.bn.num_batches_tracked"] = np.array(0, np.int64)
  return sd


@pytest.fixture(scope="module")
def shapes():
  return iw.variable_shapes()


@pytest.fixture(scope="module")
def weights(shapes):
  return _random_weights(shapes)


@pytest.fixture(scope="module")
def npz_path(weights, tmp_path_factory):
  arrays = iw.state_dict_to_arrays(_to_torch_layout(weights))
  assert sorted(arrays) == sorted(weights)
  for name, value in weights.items():
    np.testing.assert_array_equal(arrays[name], value, err_msg=name)
  path = str(tmp_path_factory.mktemp("inception") / "inception_fid.npz")
  iw.save_weights(arrays, path, source_file="fake.pth", source_sha256="0" * 64)
  return path


@pytest.fixture(scope="module")
def loaded(npz_path):
  return iw.load_inception(npz_path)


@pytest.fixture(scope="module")
def apply(loaded):
  """(jitted features(state, x), state of the loaded model): one compilation for the whole module."""
  graphdef, state = nnx.split(loaded[0])
  return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)), state


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def test_features_are_finite_and_nonnegative(apply, images):
  fn, state = apply
  feats = np.asarray(fn(state, preprocess(images)))
  assert feats.shape == (3, 2048) and feats.dtype == np.float32
  assert np.isfinite(feats).all() and (feats >= 0).all() and feats.max() > 0


def test_load_round_trip_gives_identical_features(apply, loaded, weights, images):
  fn, state = apply
  model, metadata = loaded
  assert metadata["weights_sha256"] == iw.weights_sha256(weights)
  assert metadata["source_file"] == "fake.pth" and metadata["format_version"] == iw.FORMAT_VERSION
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model)), sep="/")
  for name, value in weights.items():
    np.testing.assert_array_equal(np.asarray(flat[name]), value, err_msg=name)
  in_memory = nnx.state(model)
  nnx.replace_by_pure_dict(in_memory, traverse_util.unflatten_dict(
      {k: jnp.asarray(v) for k, v in weights.items()}, sep="/"))
  x = preprocess(images)
  np.testing.assert_array_equal(np.asarray(fn(state, x)), np.asarray(fn(in_memory, x)))


def _bilinear_reference(img, size):
  """Half-pixel-centre bilinear resize (align_corners=False, no antialiasing) of (H, W, C) to (size, size, C)."""

  def axis_weights(n_in):
    src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    mat = np.zeros((size, n_in))
    np.add.at(mat, (np.arange(size), i0), 1 - frac)
    np.add.at(mat, (np.arange(size), i1), frac)
    return mat

  rows, cols = axis_weights(img.shape[0]), axis_weights(img.shape[1])
  return np.einsum("ih,jw,hwc->ijc", rows, cols, img.astype(np.float64))


def test_preprocess_value_range_and_passthrough():
  img = np.zeros((2, 299, 299, 3), np.uint8)
  img[1] = 255
  img[0, 5, 7] = 51
  x = np.asarray(preprocess(img))
  assert x.shape == (2, 299, 299, 3) and x.dtype == np.float32
  assert x[0, 0, 0, 0] == -1.0 and (x[1] == 1.0).all()
  np.testing.assert_allclose(x, img / 127.5 - 1.0, rtol=0, atol=1e-7)  # 299 x 299 is not resampled.
  const = np.asarray(preprocess(np.full((1, 7, 5, 3), 77, np.uint8)))
  np.testing.assert_allclose(const, 77 / 127.5 - 1.0, atol=1e-6)


def test_preprocess_grayscale_is_replicated():
  gray = np.random.default_rng(2).integers(0, 256, (2, 9, 9, 1), dtype=np.uint8)
  np.testing.assert_array_equal(preprocess(gray, size=16), preprocess(np.repeat(gray, 3, axis=-1), size=16))
  with pytest.raises(ValueError, match="uint8"):
    preprocess(gray.astype(np.float32))


@pytest.mark.parametrize("size", [299, 4])
def test_preprocess_matches_numpy_bilinear(size):
  img = np.random.default_rng(3).integers(0, 256, (1, 7, 5, 3), dtype=np.uint8)
  got = np.asarray(jax.jit(preprocess, static_argnames="size")(img, size=size))[0]
  want = _bilinear_reference(img[0], size) / 127.5 - 1.0
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_avg_pool_excludes_padding():
  x = np.random.default_rng(4).normal(size=(2, 5, 6, 3)).astype(np.float32)
  got = np.asarray(avg_pool_3x3_exclude_pad(jnp.asarray(x)))
  want = np.zeros_like(x)
  for i in range(5):
    for j in range(6):
      window = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      want[:, i, j] = window.mean(axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  ones = np.asarray(avg_pool_3x3_exclude_pad(jnp.ones((1, 5, 6, 1))))
  np.testing.assert_allclose(ones, 1.0)  # Corners divide by 4, edges by 6: still exactly the mean.


def test_state_dict_errors_name_the_keys(weights):
  sd = _to_torch_layout(weights)
  del sd["Mixed_6a.branch3x3.bn.running_var"]
  sd["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
  with pytest.raises(ValueError, match=r"AuxLogits\.fc\.weight.*Mixed_6a/branch3x3/bn/var"):
    iw.state_dict_to_arrays(sd)
  sd = _to_torch_layout(weights)
  sd["Mixed_7c.branch_pool.conv.weight"] = np.zeros((192, 2047, 1, 1), np.float32)
  with pytest.raises(ValueError, match=r"Mixed_7c/branch_pool/conv/kernel.*\(1, 1, 2047, 192\).*\(1, 1, 2048, 192\)"):
    iw.state_dict_to_arrays(sd)


def test_missing_weights_file_explains_how_to_get_it(tmp_path, monkeypatch):
  path = str(tmp_path / "nowhere" / "inception.npz")
  monkeypatch.setenv(iw.ENV_VAR, path)
  assert iw.default_weights_path() == path
  with pytest.raises(UserError) as err:
    iw.load_inception()
  message = str(err.value)
  assert "\n" not in message and path in message
  assert "pt_inception-2015-12-05-6726825d.pth" in message and "distill fid convert-weights" in message


def test_corrupt_weights_file_is_a_user_error(tmp_path):
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"PK\x03\x04 not really a zip file")
  with pytest.raises(UserError, match="not a readable"):
    iw.load_inception(str(garbage))
  tampered = str(tmp_path / "tampered.npz")
  metadata = iw.save_weights({"a": np.zeros(3, np.float32)}, tampered, source_file="x", source_sha256="y")
  np.savez(tampered, a=np.ones(3, np.float32), **{iw.METADATA_KEY: np.array(json.dumps(metadata))})
  with pytest.raises(UserError, match="checksum"):
    iw.load_inception(tampered)
  foreign = str(tmp_path / "foreign.npz")
  iw.save_weights({"a": np.zeros(3, np.float32)}, foreign, source_file="x", source_sha256="y")
  with pytest.raises(UserError, match=r"does not fit InceptionV3: missing \['Conv2d_1a_3x3/.*unexpected \['a'\]"):
    iw.load_inception(foreign)


def test_wrong_shape_names_the_parameter(weights, tmp_path):
  bad = dict(weights)
  bad["Mixed_5b/branch_pool/bn/scale"] = np.ones(33, np.float32)
  path = str(tmp_path / "bad.npz")
  iw.save_weights(bad, path, source_file="x", source_sha256="y")
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # The atomic writer leaves no temp file.
  with pytest.raises(UserError, match=r"Mixed_5b/branch_pool/bn/scale has shape \(33,\).*\(32,\)"):
    iw.load_inception(path)


def test_convert_without_torch_says_why(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)
  (tmp_path / "x.pth").write_bytes(b"not needed: torch is missing")
  with pytest.raises(UserError, match="only for this one step"):
    iw.convert(str(tmp_path / "x.pth"), str(tmp_path / "x.npz"))


def _torch_fid_inception(torch):
  """pytorch-fid's FID Inception (to pool3) in plain PyTorch: takes (N, 3, H, W) in [0, 1], returns (N, 2048)."""
  nn, F = torch.nn, torch.nn.functional

  class BasicConv2d(nn.Module):

    def __init__(self, c_in, c_out, **kwargs):
      super().__init__()
      self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
      self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  def avg_pool(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

  class FIDInceptionA(nn.Module):

    def __init__(self, c_in, pool_features):
      super().__init__()
      self.branch1x1 = BasicConv2d(c_in, 64, kernel_size=1)
      self.branch5x5_1 = BasicConv2d(c_in, 48, kernel_size=1)
      self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
      self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
      self.branch_pool = BasicConv2d(c_in, pool_features, kernel_size=1)

    def forward(self, x):
      return torch.cat([
          self.branch1x1(x),
          self.branch5x5_2(self.branch5x5_1(x)),
          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
          self.branch_pool(avg_pool(x))], 1)

  class InceptionB(nn.Module):

    def __init__(self, c_in):
      super().__init__()
      self.branch3x3 = BasicConv2d(c_in, 384, kernel_size=3, stride=2)
      self.branch3x3dbl_1 = BasicConv2d(c_in, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
      return torch.cat([
          self.branch3x3(x),
          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
          F.max_pool2d(x, kernel_size=3, stride=2)], 1)

  class FIDInceptionC(nn.Module):

    def __init__(self, c_in, channels_7x7):
      super().__init__()
      c7 = channels_7x7
      self.branch1x1 = BasicConv2d(c_in, 192, kernel_size=1)
      self.branch7x7_1 = BasicConv2d(c_in, c7, kernel_size=1)
      self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_1 = BasicConv2d(c_in, c7, kernel_size=1)
      self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x):
      dbl = self.branch7x7dbl_1(x)
      for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
        dbl = conv(dbl)
      return torch.cat([
          self.branch1x1(x),
          self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
          dbl,
          self.branch_pool(avg_pool(x))], 1)

  class InceptionD(nn.Module):

    def __init__(self, c_in):
      super().__init__()
      self.branch3x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
      self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
      self.branch7x7x3_1 = BasicConv2d(c_in, 192, kernel_size=1)
      self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
      b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
      return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

  class FIDInceptionE(nn.Module):

    def __init__(self, c_in, use_max_pool):
      super().__init__()
      self.use_max_pool = use_max_pool
      self.branch1x1 = BasicConv2d(c_in, 320, kernel_size=1)
      self.branch3x3_1 = BasicConv2d(c_in, 384, kernel_size=1)
      self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch3x3dbl_1 = BasicConv2d(c_in, 448, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
      self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch_pool = BasicConv2d(c_in, 192, kernel_size=1)

    def forward(self, x):
      b3 = self.branch3x3_1(x)
      dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.use_max_pool else avg_pool(x)
      return torch.cat([
          self.branch1x1(x),
          self.branch3x3_2a(b3), self.branch3x3_2b(b3),
          self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
          self.branch_pool(pooled)], 1)

  class FIDInception(nn.Module):

    def __init__(self):
      super().__init__()
      self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
      self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
      self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
      self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
      self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
      self.Mixed_5b = FIDInceptionA(192, pool_features=32)
      self.Mixed_5c = FIDInceptionA(256, pool_features=64)
      self.Mixed_5d = FIDInceptionA(288, pool_features=64)
      self.Mixed_6a = InceptionB(288)
      self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
      self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
      self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
      self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
      self.Mixed_7a = InceptionD(768)
      self.Mixed_7b = FIDInceptionE(1280, use_max_pool=False)
      self.Mixed_7c = FIDInceptionE(2048, use_max_pool=True)
      self.fc = nn.Linear(2048, 1008)  # In the checkpoint, unused for features.

    def forward(self, x):
      x = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
      x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
      x = F.max_pool2d(x, kernel_size=3, stride=2)
      x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
      for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                    self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
        x = block(x)
      return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)

  return FIDInception()


def test_preprocess_matches_torch_interpolate():
  torch = pytest.importorskip("torch")
  img = np.random.default_rng(5).integers(0, 256, (2, 13, 10, 3), dtype=np.uint8)
  for size in (299, 8):
    t = torch.from_numpy(img).permute(0, 3, 1, 2).double() / 255
    want = 2 * torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False) - 1
    got = np.asarray(preprocess(img, size=size))
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=2e-6)


def test_parity_with_pytorch(apply, weights, images, tmp_path):
  torch = pytest.importorskip("torch")
  net = _torch_fid_inception(torch).eval()
  net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in _to_torch_layout(weights).items()})
  pth = str(tmp_path / "fake_inception.pth")
  torch.save(net.state_dict(), pth)
  with pytest.raises(UserError, match="pt_inception-2015-12-05-6726825d.pth"):
    iw.convert(pth, str(tmp_path / "rejected.npz"))
  metadata = iw.convert(pth, str(tmp_path / "converted.npz"), check_hash=False)
  model, loaded_metadata = iw.load_inception(str(tmp_path / "converted.npz"))
  assert loaded_metadata == metadata and metadata["source_file"] == "fake_inception.pth"

  with torch.no_grad():
    want = net(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()
  fn, _ = apply
  got = np.asarray(fn(nnx.state(model), preprocess(images)))
  max_abs = float(np.abs(got - want).max())
  rel = max_abs / float(np.abs(want).max())
  print(f"\nFID Inception parity vs PyTorch: max abs diff {max_abs:.3e}, relative to max |feature| "
        f"{float(np.abs(want).max()):.3e}: {rel:.3e}")
  assert rel < 1e-4


def test_features_identical_on_1_and_8_devices(npz_path):
  """The sharded extractor (8 fake devices, last batch padded) equals one device on 11 images."""
  from distill.evaluation.features import inception_features

  images = np.random.default_rng(3).integers(0, 256, (11, 16, 16, 3), dtype=np.uint8)
  one = inception_features(npz_path, batch_size=16, mesh=jax.make_mesh((1,), ("batch",), devices=jax.devices()[:1]))
  eight = inception_features(npz_path, batch_size=16)
  a, b = one(images)["features"], eight(images)["features"]
  assert a.shape == (11, 2048) and eight.mesh.size == 8
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())
  print(f"1 vs 8 devices: max abs diff {np.abs(a - b).max():.3g}")

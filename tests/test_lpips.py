"""LPIPS(VGG): the NNX network against an independent numpy reference fed torch-layout weights (so the conversion's
OIHW -> HWIO mapping is checked too), its invariances, the weights file's errors, and LPIPS as a reflow distance."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import common, tiny
from distill import lpips_weights, weights_file
from distill.data import DataSpec
from distill.errors import UserError
from distill.objectives import build, reflow
from flow_stubs import ConstantFlow
from models.lpips import LPIPS, SCALE, SHIFT, VGG16_CHANNELS, VGG16_SLICES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def torch_layout():
  """Random VGG16 (He-scaled, so deep features stay alive) and LPIPS linear state dicts in torch's layout."""
  rng = np.random.default_rng(0)
  vgg, c_in = {}, 3
  for indices, c_out in zip(VGG16_SLICES, VGG16_CHANNELS):
    for index in indices:
      vgg[f"features.{index}.weight"] = rng.normal(0, np.sqrt(2 / (9 * c_in)), (c_out, c_in, 3, 3)).astype(np.float32)
      vgg[f"features.{index}.bias"] = rng.normal(0, 0.05, (c_out,)).astype(np.float32)
      c_in = c_out
  vgg["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # torchvision's head: ignored by the conversion
  lin = {f"lin{k}.model.1.weight": rng.uniform(0, 0.1, (1, c, 1, 1)).astype(np.float32)
         for k, c in enumerate(VGG16_CHANNELS)}
  return vgg, lin


@pytest.fixture(scope="module")
def weights_path(torch_layout, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("lpips") / "lpips_vgg.npz")
  weights_file.save_weights(lpips_weights.state_dicts_to_arrays(*torch_layout), path, vgg_file="fake")
  return path


def _conv3x3_nchw(x, w, b):
  """Cross-correlation with zero padding 1, as torch's Conv2d: x (N, C, H, W), w (O, C, 3, 3)."""
  n, _, h, width = x.shape
  padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  out = np.zeros((n, w.shape[0], h, width))
  for dy in range(3):
    for dx in range(3):
      out += np.einsum("nchw,oc->nohw", padded[:, :, dy:dy + h, dx:dx + width], w[:, :, dy, dx])
  return out + b[None, :, None, None]


def _reference_lpips(x0, x1, vgg, lin):
  """LPIPS v0.1 (VGG) in float64 numpy, NCHW as the lpips package; x0, x1: (N, H, W, 3) in [-1, 1]."""
  def taps(x):
    h = (x.transpose(0, 3, 1, 2) - np.array(SHIFT)[None, :, None, None]) / np.array(SCALE)[None, :, None, None]
    out = []
    for slice_index, indices in enumerate(VGG16_SLICES):
      if slice_index:
        n, c, hh, ww = h.shape
        h = h[:, :, :hh // 2 * 2, :ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
      for index in indices:
        h = np.maximum(_conv3x3_nchw(h, vgg[f"features.{index}.weight"], vgg[f"features.{index}.bias"]), 0)
      out.append(h)
    return out

  total = np.zeros(x0.shape[0])
  for k, (f0, f1) in enumerate(zip(taps(x0.astype(np.float64)), taps(x1.astype(np.float64)))):
    n0 = f0 / (np.sqrt((f0**2).sum(axis=1, keepdims=True)) + 1e-10)
    n1 = f1 / (np.sqrt((f1**2).sum(axis=1, keepdims=True)) + 1e-10)
    w = lin[f"lin{k}.model.1.weight"][0, :, 0, 0]
    total += np.einsum("nchw,c->nhw", (n0 - n1) ** 2, w).mean(axis=(1, 2))
  return total


def _images(seed, shape=(3, 16, 16, 3)):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_lpips_matches_the_numpy_reference(torch_layout, weights_path):
  model, metadata = lpips_weights.load_lpips(weights_path)
  assert metadata["vgg_file"] == "fake"
  x0, x1 = _images(1), _images(2)
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(x0), jnp.asarray(x1))),
                             _reference_lpips(x0, x1, *torch_layout), rtol=2e-4)
  # Odd sizes floor in the max pools (17 -> 8 -> 4 -> 2 -> 1), as torch's MaxPool2d(2, 2).
  y0, y1 = _images(3, (2, 17, 17, 3)), _images(4, (2, 17, 17, 3))
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(y0), jnp.asarray(y1))),
                             _reference_lpips(y0, y1, *torch_layout), rtol=2e-4)


def test_lpips_invariances_grayscale_and_resize(weights_path):
  model, _ = lpips_weights.load_lpips(weights_path)
  x0, x1 = jnp.asarray(_images(5)), jnp.asarray(_images(6))
  d = np.asarray(model(x0, x1))
  assert np.all(d > 0)
  np.testing.assert_allclose(model(x1, x0), d, rtol=1e-6)  # symmetric
  np.testing.assert_allclose(model(x0, x0), 0.0, atol=1e-7)  # zero on identical images
  g0, g1 = x0[..., :1], x1[..., :1]  # grayscale is its RGB repetition
  np.testing.assert_allclose(model(g0, g1), model(jnp.repeat(g0, 3, -1), jnp.repeat(g1, 3, -1)), rtol=1e-6)
  # resize=32 equals resizing by hand first.
  resized, _ = lpips_weights.load_lpips(weights_path, resize=32)
  up = lambda x: jax.image.resize(x, (x.shape[0], 32, 32, 3), "bilinear", antialias=False)
  np.testing.assert_allclose(resized(x0, x1), model(up(x0), up(x1)), rtol=1e-5)
  with pytest.raises(ValueError, match="1 or 3 channels"):
    model(x0[..., :2], x1[..., :2])
  with pytest.raises(ValueError, match="at least 16 x 16.*lpips_resize"):
    model(x0[:, :8, :8], x1[:, :8, :8])


def test_convert_from_pth_files(torch_layout, tmp_path):
  torch = pytest.importorskip("torch")
  vgg_pth, lin_pth = str(tmp_path / "vgg16.pth"), str(tmp_path / "vgg.pth")
  torch.save({k: torch.from_numpy(v) for k, v in torch_layout[0].items()}, vgg_pth)
  torch.save({k: torch.from_numpy(v) for k, v in torch_layout[1].items()}, lin_pth)
  out = str(tmp_path / "out" / "lpips.npz")
  with pytest.raises(UserError, match="not torchvision's 397923af"):
    lpips_weights.convert(vgg_pth, lin_pth, out)
  meta = lpips_weights.convert(vgg_pth, lin_pth, out, check_hash=False)
  assert meta["vgg_sha256"] == weights_file.file_sha256(vgg_pth)
  model, _ = lpips_weights.load_lpips(out)
  x0, x1 = _images(7, (2, 16, 16, 3)), _images(8, (2, 16, 16, 3))
  np.testing.assert_allclose(model(x0, x1), _reference_lpips(x0, x1, *torch_layout), rtol=2e-4)


def test_bad_weights_are_named(torch_layout, tmp_path, monkeypatch):
  monkeypatch.setenv(lpips_weights.ENV_VAR, str(tmp_path / "none.npz"))
  with pytest.raises(UserError, match="LPIPS weights not found at .*none.npz.*vgg16-397923af.pth.*lpips-weights"):
    lpips_weights.load_lpips()
  vgg, lin = torch_layout
  with pytest.raises(ValueError, match="missing keys \\['features.28.bias'\\]"):
    lpips_weights.state_dicts_to_arrays({k: v for k, v in vgg.items() if k != "features.28.bias"}, lin)
  with pytest.raises(ValueError, match="lin2.model.1.weight: shape"):
    lpips_weights.state_dicts_to_arrays(vgg, {**lin, "lin2.model.1.weight": np.zeros((1, 3, 1, 1), np.float32)})
  arrays = lpips_weights.state_dicts_to_arrays(vgg, lin)
  arrays["features_5/kernel"] = arrays["features_5/kernel"][..., :64]
  bad = str(tmp_path / "bad.npz")
  weights_file.save_weights(arrays, bad)
  with pytest.raises(UserError, match="parameter features_5/kernel has shape"):
    lpips_weights.load_lpips(bad)


def test_reflow_with_lpips_compares_one_step_images(weights_path):
  lpips = lpips_weights.load_lpips_distance(weights_path)
  flow = ConstantFlow(jnp.asarray(_images(9, (1, 16, 16, 1))))
  groups = {"model": type("G", (), {"network": flow})()}
  z, x1 = jnp.asarray(_images(10, (4, 16, 16, 1))), jnp.asarray(_images(11, (4, 16, 16, 1)))
  eps = 1e-3
  x1_hat = eps * x1 + (1 - eps) * z + (1 - eps) * flow.c  # x_eps + (1 - eps) v
  for kind, extra in (("lpips", 0.0), ("lpips+l2", jnp.mean((x1_hat - x1) ** 2, axis=(1, 2, 3)))):
    objective = reflow.Reflow(groups=groups, time="t0", t_eps=eps, distance=kind, lpips=lpips)
    loss, _ = objective.loss("model", {"model": None}, {}, None, {"noise": z, "x": x1}, jax.random.key(0), 0)
    assert float(loss) == pytest.approx(float(jnp.mean(lpips(x1_hat, x1) + extra)), rel=1e-5)
  with pytest.raises(ValueError, match="needs time='t0'"):
    reflow.Reflow(groups=groups, time="uniform", distance="lpips", lpips=lpips)
  with pytest.raises(ValueError, match="needs LPIPS weights"):
    reflow.Reflow(groups=groups, time="t0", distance="lpips")


def test_lpips_config_without_weights_is_one_clear_error(tmp_path):
  config = tiny.get_config()
  config.objective = common.reflow_objective(time="t0", distance="lpips", init="random",
                                             lpips_weights=str(tmp_path / "missing.npz"))
  with pytest.raises(UserError, match="LPIPS weights not found at .*missing.npz"):
    build(config, DataSpec("points", (2,), 0, (-4.0, 4.0)))
  assert not os.path.exists(tmp_path / "missing.npz")


def test_random_init_model_has_the_converted_variables():
  shapes = weights_file.variable_shapes(nnx.eval_shape(lambda: LPIPS(rngs=nnx.Rngs(0))))
  assert shapes["features_0/kernel"] == (3, 3, 3, 64) and shapes["lin4/kernel"] == (512, 1)
  assert len(shapes) == 2 * 13 + 5

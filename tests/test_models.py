"""Model shapes, conditioning, dropout, logical sharding annotations and `network_from_config` validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from configs import common
from distill import sharding
from distill.data import DataSpec
from distill.networks import Network, network_from_config

EDM = {"name": "edm", "sigma_data": 0.5}
MLP = {"name": "mlp", "dim": 2, "width": 16, "depth": 1, "emb_dim": 8}
UNET = {"name": "unet", "resolution": 8, "in_channels": 2, "channels": (8, 16), "num_blocks": 1,
        "attn_resolutions": (4,)}


def _perturbed_params(net, seed=0, scale=0.1):
  """Fresh parameters plus noise, so zero-initialised output layers give non-zero outputs.

  Initialised eagerly: a jitted UNet init (many threefry calls) takes close to a minute to compile on CPU.
  """
  params = net.init(jax.random.key(seed))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: a + scale * rng.standard_normal(a.shape).astype(np.float32), params)


def _raw(net):
  """Jitted raw network call (jit compiles faster than eager op-by-op dispatch on CPU)."""
  return jax.jit(net.raw, static_argnames="train")


def _flat(state):
  return {".".join(map(str, path)): v for path, v in nnx.to_flat_state(state)}


# ----- shapes and conditioning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim,num_classes", [(2, 0), (3, 4)])
def test_mlp_shapes(dim, num_classes):
  net = Network.create(MLP | {"dim": dim, "num_classes": num_classes}, EDM)
  params = _perturbed_params(net)
  x = jnp.ones((5, dim))
  cond = jnp.array([0, 1, 2, 3, num_classes]) if num_classes else None
  raw = _raw(net)(params, x, jnp.zeros(5), cond)
  assert raw.shape == (5, dim) and raw.dtype == jnp.float32
  assert jax.jit(net.denoise)(params, x, jnp.full((5,), 0.7), cond).shape == (5, dim)
  assert jax.jit(net.velocity)(params, x, 0.4, cond).shape == (5, dim)


def test_unet_shapes_and_attention():
  """Unconditional and conditional UNets (attention at 4x4) map (B, H, W, C) to (B, H, W, C)."""
  net = Network.create(UNET, EDM)
  flat = _flat(net.abstract_params())
  assert any(k.startswith("enc_attn.") for k in flat) and any(k.startswith("dec_attn.") for k in flat)
  assert any(k.startswith("mid_attn.") for k in flat)
  params = _perturbed_params(net)
  x = jax.random.normal(jax.random.key(3), (2, 8, 8, 2))
  out = jax.jit(net.denoise)(params, x, jnp.array([0.5, 3.0]))
  assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))

  cond_net = Network.create(UNET | {"num_classes": 3, "attn_resolutions": ()}, EDM)
  assert not any(k.startswith("enc_attn.") for k in _flat(cond_net.abstract_params()))
  params = _perturbed_params(cond_net)
  raw = _raw(cond_net)
  out_a = raw(params, x, jnp.zeros(2), jnp.array([0, 3]))  # 3 = null label
  out_b = raw(params, x, jnp.zeros(2), jnp.array([1, 3]))
  assert out_a.shape == x.shape
  assert not np.allclose(out_a[0], out_b[0])  # the label matters
  np.testing.assert_array_equal(out_a[1], out_b[1])  # examples are independent


def test_attention_changes_output():
  """Only the attention blocks differ between two UNets with the same other parameters: attention is applied."""
  base = Network.create(UNET | {"attn_resolutions": ()}, EDM)
  attn = Network.create(UNET, EDM)
  params = _perturbed_params(attn)
  shared = nnx.State.from_flat_path({p: v for p, v in nnx.to_flat_state(params)
                                     if p[0] not in ("enc_attn", "dec_attn")})
  flat_base, flat_attn = _flat(base.abstract_params()), _flat(params)
  assert set(flat_base) < set(flat_attn)
  x = jax.random.normal(jax.random.key(4), (1, 8, 8, 2))
  with_attn = _raw(attn)(params, x, jnp.zeros(1))
  without = _raw(base)(shared, x, jnp.zeros(1))
  assert with_attn.shape == without.shape and not np.allclose(with_attn, without)


@pytest.mark.parametrize("config", [MLP | {"num_classes": 3}, UNET | {"num_classes": 3, "attn_resolutions": ()}])
def test_conditional_model_requires_labels(config):
  net = Network.create(config, EDM)
  x = jnp.ones((2, 2)) if config["name"] == "mlp" else jnp.ones((2, 8, 8, 2))
  with pytest.raises(ValueError, match="class-conditional"):
    jax.eval_shape(lambda: net.denoise(net.init(jax.random.key(0)), x, jnp.ones(2)))
  out = jax.eval_shape(lambda: net.denoise(net.init(jax.random.key(0)), x, jnp.ones(2), jnp.array([0, 3])))
  assert out.shape == x.shape


def test_unknown_model_and_bad_arguments():
  with pytest.raises(ValueError, match="unknown model"):
    Network.create({"name": "transformer"}, EDM)
  with pytest.raises(ValueError, match="bad arguments"):
    Network.create(MLP | {"heads": 4}, EDM)


# ----- dropout ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [MLP | {"dropout": 0.5}, UNET | {"dropout": 0.5, "attn_resolutions": ()}])
def test_dropout(config):
  """train=True with an rng drops units (output depends on the rng); train=False ignores the rng."""
  net = Network.create(config, EDM)
  params = _perturbed_params(net)
  shape = (4, 2) if config["name"] == "mlp" else (2, 8, 8, 2)
  x, c = jax.random.normal(jax.random.key(5), shape), jnp.zeros(shape[0])
  k1, k2 = jax.random.key(1), jax.random.key(2)
  raw = _raw(net)
  clean = raw(params, x, c)
  np.testing.assert_array_equal(raw(params, x, c, train=False, rng=k1), clean)
  np.testing.assert_array_equal(raw(params, x, c, train=True, rng=None), clean)
  d1 = raw(params, x, c, train=True, rng=k1)
  np.testing.assert_array_equal(raw(params, x, c, train=True, rng=k1), d1)
  assert not np.allclose(d1, clean)
  assert not np.allclose(d1, raw(params, x, c, train=True, rng=k2))
  # Without dropout, training mode changes nothing.
  plain = Network.create({k: v for k, v in config.items() if k != "dropout"}, EDM)
  np.testing.assert_array_equal(_raw(plain)(params, x, c, train=True, rng=k1), clean)


# ----- logical sharding annotations -------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [MLP | {"num_classes": 3}, UNET | {"num_classes": 3}])
def test_every_param_has_logical_axes(config):
  """Each nnx.Param carries 'out_sharding' (flax 0.12 metadata) with one logical name (or None) per dimension."""
  params = Network.create(config, EDM).abstract_params()
  missing, known = [], {None, "embed", "mlp", "conv_in", "conv_out", "norm", "vocab"}
  for path, var in nnx.to_flat_state(params):
    assert isinstance(var, nnx.Param)
    names = var.get_metadata().get("out_sharding")
    if names is None:
      missing.append(".".join(map(str, path)))
      continue
    assert len(names) == var.get_value().ndim, (path, names)
    assert set(names) <= known, (path, names)
  assert not missing, f"parameters without logical sharding annotations: {missing}"


def test_param_shardings_default_rules():
  """On a (data 4, fsdp 2) mesh the default rules shard 'embed' and 'conv_out' dims over fsdp, the rest replicated."""
  mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
  assert dict(mesh.shape) == {"student": 1, "data": 4, "fsdp": 2}
  net = Network.create(UNET | {"num_classes": 3}, EDM)
  shardings = _flat(sharding.param_shardings(net.abstract_params(), mesh, common.DEFAULT_RULES))
  rules = dict(common.DEFAULT_RULES)
  for path, var in nnx.to_flat_state(net.abstract_params()):
    key = ".".join(map(str, path))
    names = var.get_metadata()["out_sharding"]
    expected = P(*[None if n is None else rules[n] for n in names])
    assert shardings[key].get_value().spec == expected, key
    assert shardings[key].get_value().mesh.shape == mesh.shape
  assert shardings["conv_in.kernel"].get_value().spec == P(None, None, None, "fsdp")
  assert shardings["conv_in.bias"].get_value().spec == P("fsdp")
  assert shardings["embed.fc1.kernel"].get_value().spec == P("fsdp", None)
  assert shardings["embed.labels.embedding"].get_value().spec == P(None, None)
  assert shardings["norm_out.scale"].get_value().spec == P(None)
  # Parameters placed with these shardings hold half of each sharded dimension per device.
  placed = jax.device_put(net.init(jax.random.key(0)),
                          sharding.param_shardings(net.abstract_params(), mesh, common.DEFAULT_RULES))
  kernel = placed["conv_in"]["kernel"][...]
  assert kernel.shape == (3, 3, 2, 8) and kernel.addressable_shards[0].data.shape == (3, 3, 2, 4)


@pytest.mark.parametrize("config,mesh_config", [
    (UNET | {"in_channels": 1, "attn_resolutions": ()}, {"data": 4, "fsdp": 2}),  # conv_out has 1 channel
    (MLP, {"data": 1, "fsdp": 8}),  # 2-D input to the first dense layer ('embed' dim of size 2)
])
def test_param_shardings_indivisible_dims(config, mesh_config):
  """A dimension that the fsdp axis does not divide (1 image channel, 2-D points) must still give usable shardings:
  parameters can be created sharded (that dimension replicated) instead of failing with an IndivisibleError."""
  mesh = sharding.make_mesh(mesh_config)
  net = Network.create(config, EDM)
  shardings = sharding.param_shardings(net.abstract_params(), mesh, common.DEFAULT_RULES)
  for path, var in nnx.to_flat_state(net.abstract_params()):
    spec = _flat(shardings)[".".join(map(str, path))].get_value().spec
    for size, axis in zip(var.get_value().shape, tuple(spec) + (None,) * (var.get_value().ndim - len(spec))):
      assert axis is None or size % mesh.shape[axis] == 0, (path, var.get_value().shape, spec)
  placed = jax.device_put(net.init(jax.random.key(0)), shardings)
  assert jax.tree.structure(placed) == jax.tree.structure(net.abstract_params())


# ----- network_from_config ----------------------------------------------------------------------------------------


POINTS = DataSpec("points", (2,), 0, (-4.0, 4.0))
LABELLED_POINTS = DataSpec("points", (2,), 5, (-4.0, 4.0))
IMAGES = DataSpec("images", (8, 8, 3), 10, (-1.0, 1.0))


def test_network_from_config_fills_data_arguments():
  net = network_from_config({"name": "mlp", "width": 16, "depth": 1, "emb_dim": 8}, EDM, POINTS)
  kwargs = dict(net.model_kwargs)
  assert kwargs["dim"] == 2 and kwargs["num_classes"] == 0
  cond = network_from_config({"name": "mlp", "width": 16, "depth": 1, "emb_dim": 8, "conditional": True},
                             {"name": "velocity"}, LABELLED_POINTS)
  assert dict(cond.model_kwargs)["num_classes"] == 5
  assert cond.abstract_params()["embed"]["labels"]["embedding"].get_value().shape == (6, 8)  # + null label
  unet = network_from_config({"name": "unet", "channels": [8], "num_blocks": 1, "conditional": True}, EDM, IMAGES)
  kwargs = dict(unet.model_kwargs)
  assert (kwargs["resolution"], kwargs["in_channels"], kwargs["num_classes"]) == (8, 3, 10)
  assert kwargs["channels"] == (8,)  # lists are frozen to tuples (hashable)
  hash(unet)
  # Explicit values that agree with the data are accepted.
  assert network_from_config(MLP, EDM, POINTS) == Network.create(MLP | {"num_classes": 0}, EDM)


@pytest.mark.parametrize("model,spec,match", [
    (MLP | {"dim": 3}, POINTS, "model.dim=3"),
    ({"name": "unet"}, POINTS, "needs image data"),
    ({"name": "mlp"}, IMAGES, "needs point data"),
    ({"name": "unet", "resolution": 16}, IMAGES, "model.resolution=16"),
    ({"name": "unet", "in_channels": 1}, IMAGES, "model.in_channels=1"),
    (MLP | {"conditional": True}, POINTS, "no labels"),
    (MLP | {"num_classes": 3, "conditional": True}, LABELLED_POINTS, "model.num_classes=3"),
])
def test_network_from_config_rejects_mismatches(model, spec, match):
  with pytest.raises(ValueError, match=match):
    network_from_config(model, EDM, spec)

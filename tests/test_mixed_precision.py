"""Mixed precision (`model.compute_dtype='bfloat16'`): the network body runs in bf16 while parameters, gradients,
EDM preconditioning and outputs stay float32; configs and bundles carry the setting; old runs still resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill import checkpointing
from distill.networks import Network

EDM = {"name": "edm", "sigma_data": 0.5}
UNET = {"name": "unet", "resolution": 8, "in_channels": 1, "channels": (8, 16), "num_blocks": 1,
        "attn_resolutions": (4,)}


def _networks():
  return Network.create(UNET, EDM), Network.create(UNET | {"compute_dtype": "bfloat16"}, EDM)


def _params(net):
  params = net.init(jax.random.key(0))
  rng = np.random.default_rng(0)  # perturb: the zero-initialised output conv would give D = c_skip x exactly
  return jax.tree.map(lambda a: a + 0.05 * rng.standard_normal(a.shape).astype(np.float32), params)


def _inputs():
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  return x, jnp.array([0.01, 0.3, 2.0, 40.0])


def test_bf16_runs_the_body_in_bf16_and_keeps_preconditioning_and_outputs_float32():
  fp32, bf16 = _networks()
  params = _params(fp32)
  x, sigma = _inputs()
  jaxpr = jax.make_jaxpr(lambda p: bf16.denoise(p, x, sigma))(params)
  heavy = [e for e in jaxpr.eqns if e.primitive.name in ("conv_general_dilated", "dot_general")]
  assert heavy and all(v.aval.dtype == jnp.bfloat16 for e in heavy for v in e.invars), "a matmul/conv ran in float32"
  want = jax.jit(fp32.denoise)(params, x, sigma)
  got = jax.jit(bf16.denoise)(params, x, sigma)
  assert got.dtype == jnp.float32
  # At sigma = 0.01 D = c_skip x + c_out F with c_out ~ 0.01: the float32 skip path keeps D within bf16 error of F
  # times c_out, far below bf16's relative error on x itself (which a bf16 preconditioning would give).
  rms = lambda a: np.sqrt(np.mean(np.square(np.asarray(a)).reshape(4, -1), axis=1))
  relative = rms(got - want) / rms(want)
  assert relative[0] < 1e-3, relative
  assert np.all(relative < 5e-2), relative  # bf16 keeps ~3 significant digits per operation


def test_bf16_gradients_are_float32_and_match_float32_ones():
  fp32, bf16 = _networks()
  params = _params(fp32)
  x, sigma = _inputs()
  loss = lambda net: jax.jit(jax.grad(lambda p: jnp.mean((net.denoise(p, x, sigma) - 0.5 * x) ** 2)))
  g32, g16 = loss(fp32)(params), loss(bf16)(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
  a = np.concatenate([np.ravel(g) for g in jax.tree.leaves(g32)])
  b = np.concatenate([np.ravel(g) for g in jax.tree.leaves(g16)])
  assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99


def test_unknown_compute_dtype_is_one_clear_error():
  with pytest.raises(ValueError, match=r"model.compute_dtype must be one of .*'float16'"):
    Network.create(UNET | {"compute_dtype": "float16"}, EDM)


def test_config_round_trip_keeps_compute_dtype():
  _, bf16 = _networks()
  again = Network.create(bf16.config(), EDM)
  assert again == bf16 and again.compute_dtype == "bfloat16"


def test_runs_saved_before_a_key_existed_still_resume_with_its_default():
  saved = {"model": {"name": "unet"}, "objective": {"name": "score_distillation"},
           "stages": {"a": {"config": {"model": {"name": "unet"}}}}}
  current = {"model": {"name": "unet", "compute_dtype": "float32"},
             "objective": {"name": "score_distillation", "generator_init": "teacher"},
             "stages": {"a": {"init_stage": "", "config": {"model": {"name": "unet", "compute_dtype": "float32"}}}}}
  assert checkpointing.config_differences(saved, current) == []
  current["model"]["compute_dtype"] = "bfloat16"
  current["stages"]["a"]["init_stage"] = "b"
  assert checkpointing.config_differences(saved, current) == ["model.compute_dtype", "stages.a.init_stage"]

"""A network definition plus its output parameterisation, exposed through the canonical denoiser interface.

Every teacher and student is a `Network`: `denoise(params, x, sigma, cond)` returns D(x; sigma) ~= E[x0 | x] on the
EDM path (x = x0 + sigma * n); `velocity(params, x_rf, t, cond)` is derived in closed form (RF time, data at t = 1).
Parameters are an `nnx.State` of `nnx.Param`s, kept outside the module so everything under jit is a pure function.

Mixed precision: with `compute_dtype='bfloat16'` the network body runs on bf16 copies of the parameters and inputs,
while the parameters themselves (and so gradients, optimizer state and EMA) stay float32 and the EDM
preconditioning (c_in, c_noise, c_skip, c_out) and every output stay float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import models
from distill import diffusion


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _freeze(kwargs: dict) -> tuple:
  return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


@dataclasses.dataclass(frozen=True)
class Network:
  """model name + kwargs (hashable) and an output parameterisation; `graphdef` is built once, abstractly."""

  model_name: str
  model_kwargs: tuple
  parameterization: Any
  compute_dtype: str = "float32"

  @classmethod
  def create(cls, model_config: dict, parameterization: dict) -> "Network":
    """From config dicts: {'name': ..., 'compute_dtype': 'float32'|'bfloat16' (optional), **kwargs} and
    {'name': 'edm'|'velocity', **kwargs}."""
    model_config = dict(model_config)
    param_config = dict(parameterization)
    name = model_config.pop("name")
    compute_dtype = model_config.pop("compute_dtype", "float32")
    if compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"model.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {compute_dtype!r}")
    param = diffusion.make_parameterization(param_config.pop("name"), **param_config)
    net = cls(name, _freeze(model_config), param, compute_dtype)
    net.graphdef  # validates the model config early (unknown model or argument)
    return net

  def build(self, rng: jax.Array) -> nnx.Module:
    with nnx.use_eager_sharding(False):
      return models.build(self.model_name, rngs=nnx.Rngs(params=rng), **dict(self.model_kwargs))

  @property
  def graphdef(self) -> nnx.GraphDef:
    return self._split_abstract()[0]

  def abstract_params(self) -> nnx.State:
    """Parameter shapes/dtypes with logical sharding metadata (no computation)."""
    return self._split_abstract()[1]

  def _split_abstract(self):
    cached = self.__dict__.get("_abstract")
    if cached is None:
      try:
        module = nnx.eval_shape(lambda: self.build(jax.random.key(0)))
      except TypeError as e:
        raise ValueError(f"bad arguments for model {self.model_name!r}: {e}") from None
      cached = nnx.split(module, nnx.Param)
      object.__setattr__(self, "_abstract", cached)
    return cached

  def init(self, rng: jax.Array) -> nnx.State:
    """Fresh parameters (call under jit with out_shardings to create them already sharded)."""
    return nnx.split(self.build(rng), nnx.Param)[1]

  def raw(self, params, x_in, c_noise, cond=None, *, train=False, rng=None):
    """The bare network on preconditioned inputs, run in `compute_dtype` (its output too; callers cast back)."""
    module, x_in = self._in_compute_dtype(params, x_in)
    return module(x_in, c_noise, cond, train=train, rng=rng)

  def _in_compute_dtype(self, params, x_in):
    """(the module with its parameters in compute_dtype, x_in in compute_dtype); c_noise stays float32 (the
    embedding casts)."""
    dtype = COMPUTE_DTYPES[self.compute_dtype]
    if dtype != jnp.float32:
      cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
      params, x_in = jax.tree.map(cast, params), cast(x_in)
    return nnx.merge(self.graphdef, params), x_in

  def same_architecture(self, other: "Network") -> bool:
    """Same model, arguments and parameterisation (parameters interchangeable), whatever the compute dtypes."""
    return (self.model_name, self.model_kwargs, self.parameterization) == (
        other.model_name, other.model_kwargs, other.parameterization)

  def same_model(self, other: "Network") -> bool:
    """Same model and arguments: the parameters fit, whatever the output parameterisations (a consistency student
    starting from an EDM teacher)."""
    return (self.model_name, self.model_kwargs) == (other.model_name, other.model_kwargs)

  def config(self) -> dict:
    """The model config this network was created from ({'name', 'compute_dtype', **kwargs})."""
    return {"name": self.model_name, "compute_dtype": self.compute_dtype, **dict(self.model_kwargs)}

  def denoise(self, params, x, sigma, cond=None, *, train=False, rng=None):
    """D(x; sigma): x (B, ...) on the EDM path, sigma () or (B,), cond (B,) int labels or None."""
    x_in, c_noise = self.parameterization.network_inputs(x, sigma)
    raw = self.raw(params, x_in, c_noise, cond, train=train, rng=rng)
    return self.parameterization.denoised(x, sigma, raw.astype(x.dtype))

  def velocity(self, params, x_rf, t, cond=None, *, train=False, rng=None):
    """RF velocity dx_t/dt at time t in (0, 1) (data at t = 1).

    A velocity-parameterised network returns its raw output; any other is converted in closed form,
    v = (D(x_t / t; (1 - t) / t) - x_t) / (1 - t).
    """
    t = jnp.asarray(t, x_rf.dtype)
    if isinstance(self.parameterization, diffusion.VelocityParameterization):
      c_noise = jnp.broadcast_to(self.parameterization.time_scale * t, x_rf.shape[:1])
      return self.raw(params, x_rf, c_noise, cond, train=train, rng=rng).astype(x_rf.dtype)
    x0 = self.denoise(params, diffusion.edm_from_rf(x_rf, t), diffusion.sigma_from_rf_time(t), cond,
                      train=train, rng=rng)
    return diffusion.velocity_from_denoised(x_rf, t, x0)

  def feature_names(self) -> tuple[str, ...]:
    """The intermediate activations `features` can return, shallow to deep (the model's feature_names())."""
    return nnx.merge(self.graphdef, self.abstract_params()).feature_names()

  def check_feature_names(self, names) -> None:
    """A ValueError naming the valid layers when any of `names` is not one."""
    valid = self.feature_names()
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
      raise ValueError(f"unknown feature layer(s) {unknown or list(names)} for model {self.model_name!r}; valid: "
                       f"{', '.join(valid)}")

  def features(self, params, x, sigma, cond=None, names=()) -> dict:
    """{name: float32 activation} of the frozen network at (x; sigma) on the EDM path, from a forward that stops
    at the deepest requested layer. Gradients flow to x, never to `params` (stop-gradient)."""
    self.check_feature_names(names)
    x_in, c_noise = self.parameterization.network_inputs(x, sigma)
    module, x_in = self._in_compute_dtype(jax.lax.stop_gradient(params), x_in)
    out = module.features(x_in, c_noise, cond, tuple(names))
    return {k: v.astype(jnp.float32) for k, v in out.items()}

  def num_params(self) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(self.abstract_params()))


def network_from_config(model_config, parameterization, data_spec) -> Network:
  """Network for a data source: fills in the data-dependent model arguments (dim, resolution, channels, classes).

  `model_config.conditional` (default False) makes the network class-conditional on the data's labels;
  `model_config.source_conditional` (default False) conditions it on a source shaped like the data (image
  restoration: the degraded input, concatenated as extra channels; distill/restoration.py).
  """
  model = dict(model_config)
  conditional = bool(model.pop("conditional", False))
  source_conditional = bool(model.pop("source_conditional", False))
  if conditional and not data_spec.num_classes:
    raise ValueError("model.conditional=True but the data source has no labels")
  if conditional and source_conditional:
    raise ValueError("model.conditional and model.source_conditional cannot both be set (the condition input is "
                     "either class labels or a source)")
  derived = {"num_classes": data_spec.num_classes if conditional else 0}
  if source_conditional:  # absent otherwise, so that networks (and bundles) without a source compare as before
    derived["source_channels"] = data_spec.shape[-1]
  if model["name"] == "mlp":
    if data_spec.kind != "points":
      raise ValueError(f"model 'mlp' needs point data, the data source gives {data_spec.kind}")
    derived["dim"] = data_spec.shape[0]
  elif model["name"] == "unet":
    if data_spec.kind != "images":
      raise ValueError(f"model 'unet' needs image data, the data source gives {data_spec.kind}")
    derived["resolution"], derived["in_channels"] = data_spec.shape[0], data_spec.shape[2]
  for key, value in derived.items():
    if key in model and model[key] != value:
      raise ValueError(f"model.{key}={model[key]} does not match the data ({value})")
    model[key] = value
  return Network.create(model, parameterization)

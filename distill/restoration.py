"""The restoration task of OFTSR (spec reflow_trajectory_family.md §5.1): degrade, lift, perturb, score.

A clean sample x (images (B, H, W, C) in [-1, 1], or points (B, D)) is measured as y = A(x) + sigma_y n and lifted
back to x's shape, y~ = A^+(y) (the bicubic upsampling of the low-resolution image). The restoration flow runs in RF
time from the source x0 = sqrt(1 - sigma_p^2) y~ + sigma_p xi (t = 0, xi ~ N(0, I): the noise augmentation that makes
the teacher generative) to x (t = 1), conditioned on y~. Operators:
  'avgpool:<f>'  images: f x f average pooling (OFTSR's 'sr_avp'), lifted by bicubic resizing;
  'quantize:<h>' any data: the centre of the h-cell that holds each coordinate (a 2-D analogue of losing resolution);
  'identity'     denoising only (with sigma_y > 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

OPERATORS = ("avgpool", "quantize", "identity")
ONE_STEP_EPS = 1e-3  # an OFTSR student's step from the source is 1 - eps long (the official T - eps)


@dataclasses.dataclass(frozen=True)
class Degradation:
  operator: str = "avgpool:2"
  sigma_y: float = 0.0  # measurement noise, in data units
  sigma_p: float = 0.2  # source noise augmentation, in [0, 1]

  def __post_init__(self):
    name, _, arg = self.operator.partition(":")
    if name not in OPERATORS:
      raise ValueError(f"unknown degradation operator {self.operator!r}; valid: avgpool:<factor>, quantize:<cell>, "
                       "identity")
    if name != "identity":
      try:
        value = float(arg)
      except ValueError:
        raise ValueError(f"degradation operator {self.operator!r} needs a number after ':'") from None
      if value <= 0 or (name == "avgpool" and value != int(value)):
        raise ValueError(f"degradation operator {self.operator!r}: the factor / cell must be positive (a whole "
                         "factor for avgpool)")
    if not 0.0 <= self.sigma_p <= 1.0 or self.sigma_y < 0:
      raise ValueError(f"degradation needs 0 <= sigma_p <= 1 and sigma_y >= 0, got sigma_p={self.sigma_p}, "
                       f"sigma_y={self.sigma_y}")

  @property
  def _name_arg(self) -> tuple[str, float]:
    name, _, arg = self.operator.partition(":")
    return name, float(arg) if arg else 0.0

  def check_shape(self, shape) -> None:
    """A ValueError when the operator cannot degrade samples of per-example `shape`."""
    name, arg = self._name_arg
    if name == "avgpool":
      if len(shape) != 3 or shape[0] % int(arg) or shape[1] % int(arg):
        raise ValueError(f"degradation {self.operator!r} needs images whose height and width divide by {int(arg)}, "
                         f"got per-example shape {tuple(shape)}")

  def measure(self, x, rng):
    """y = A(x) + sigma_y n: (B, H / f, W / f, C) for avgpool, x's shape otherwise."""
    name, arg = self._name_arg
    if name == "avgpool":
      f = int(arg)
      b, h, w, c = x.shape
      y = x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))
    elif name == "quantize":
      y = arg * (jnp.floor(x / arg) + 0.5)
    else:
      y = x
    return y + self.sigma_y * jax.random.normal(rng, y.shape, y.dtype) if self.sigma_y else y

  def lift(self, y, shape):
    """y~ = A^+(y) of per-batch `shape` (x's): bicubic upsampling for avgpool, the identity otherwise."""
    if self._name_arg[0] == "avgpool":
      return jax.image.resize(y, shape, method="cubic")
    return y

  def observe(self, x, rng):
    """The lifted measurement y~ of clean samples x (what the network is conditioned on)."""
    return self.lift(self.measure(x, rng), x.shape)

  def source(self, y_tilde, rng):
    """The flow's starting point x0 = sqrt(1 - sigma_p^2) y~ + sigma_p xi."""
    xi = jax.random.normal(rng, y_tilde.shape, y_tilde.dtype)
    return np.sqrt(1.0 - self.sigma_p**2) * y_tilde + self.sigma_p * xi

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def degradation_from_config(section) -> Degradation:
  """A Degradation from a config (or bundle) section with keys operator, sigma_y, sigma_p."""
  return Degradation(str(section["operator"]), float(section["sigma_y"]), float(section["sigma_p"]))


def psnr(x, reference, data_range: float = 2.0) -> np.ndarray:
  """Per-example PSNR in dB, 10 log10(data_range^2 / MSE), of x against reference (both in the same units; images in
  [-1, 1] have data_range 2)."""
  x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
  mse = np.mean((x - reference).reshape(len(x), -1) ** 2, axis=1)
  return 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-20))

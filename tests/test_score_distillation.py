"""Score distillation (Uni-Instruct family, SiD, SIM, Diff-Instruct / DMD / f-distill directions).

The exact-gradient test: a Gaussian teacher q0 = N(mu, a^2 I) and a Gaussian generator G(z) = m + s z have exact
denoisers and an exact log density ratio at every sigma. Plugging them in for the teacher, the fake score and the
discriminator, the objective's Monte-Carlo generator gradient must equal, within Monte-Carlo error,
- for the Uni-Instruct estimator: grad_theta E_{p_sigma}[g(r) |D_q - D_p|^2];
- for the detached (VSD) direction: sigma^2 grad_theta E_{p_sigma}[f(q_sigma / p_sigma)],
both computed here independently by Gauss-Hermite quadrature and central finite differences.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill.objectives.base import ParamGroup
from distill.objectives.score_distillation import ScoreDistillation

SIGMA = 0.7
# f(r), r = q / p, written out independently of the code's weight table.
F = {
    "rkl": lambda r: -np.log(r),
    "fkl": lambda r: r * np.log(r),
    "jeffreys": lambda r: (r - 1) * np.log(r),
    "js": lambda r: r * np.log(r) - (1 + r) * np.log((1 + r) / 2),
    "chi2": lambda r: (r - 1) ** 2,
    "hellinger": lambda r: (np.sqrt(r) - 1) ** 2,
}
G = {"rkl": lambda r: 1 + 0 * r, "fkl": lambda r: r, "jeffreys": lambda r: 1 + r, "js": lambda r: r / (1 + r),
     "chi2": lambda r: 2 * r**2, "hellinger": lambda r: 0.5 * np.sqrt(r)}


class _Param:
  """Stand-in for a parameterisation: the analytic 'networks' below take (x, sigma) directly."""

  @staticmethod
  def network_inputs(x, sigma):
    return x, sigma


class GaussianDenoiser:
  """Exact denoiser of N(mean, var) data (elementwise) at noise sigma; params = {'mean': (d,), 'std': (d,)}."""

  model_kwargs = ()
  parameterization = _Param()

  def denoise(self, params, x, sigma, cond=None, *, train=False, rng=None):
    del cond, train, rng
    s2 = jnp.reshape(sigma, (-1, 1)) ** 2
    return x - s2 * (x - params["mean"]) / (params["std"] ** 2 + s2)


class Generator:
  """G(z) = mean + std * z, called as the denoiser D(sigma_init z; sigma_init)."""

  model_kwargs = ()

  def denoise(self, params, x, sigma, cond=None, *, train=False, rng=None):
    del cond, train, rng
    return params["mean"] + params["std"] * x / sigma


class LogRatio:
  """raw(x) = log q_sigma(x) - log p_sigma(x) in every element (so its mean is the exact logit)."""

  parameterization = _Param()

  def __init__(self, teacher):
    self.teacher = teacher

  def raw(self, params, x, sigma, cond=None):
    s2 = jnp.reshape(sigma, (-1, 1)) ** 2

    def log_density(p):
      var = p["std"] ** 2 + s2
      return jnp.sum(-0.5 * (x - p["mean"]) ** 2 / var - 0.5 * jnp.log(var), axis=-1, keepdims=True)

    return jnp.broadcast_to(log_density(self.teacher) - log_density(params), x.shape)


def _objective(teacher, **kwargs):
  groups = {"fake": ParamGroup(GaussianDenoiser(), {}), "disc": ParamGroup(LogRatio(teacher), {}),
            "generator": ParamGroup(Generator(), {})}
  options = dict(generator_sigma=f"fixed:{SIGMA}", normaliser="none", weight_normalise=False, ratio_min=0.0,
                 ratio_max=1e30, ratio_logit_clip=1e4, sigma_init=2.5)
  return ScoreDistillation(groups=groups, teacher_network=GaussianDenoiser(), **(options | kwargs))


def _mc_gradient(objective, teacher, theta, num=200_000, chunks=10):
  """Mean and standard error over `chunks` independent estimates of grad_theta of the generator loss."""
  d = theta["mean"].shape[0]

  @jax.jit
  def grad(theta, key):
    def loss(theta):
      params = {"generator": theta, "fake": jax.lax.stop_gradient(theta), "disc": jax.lax.stop_gradient(theta)}
      return objective.loss("generator", params, {}, teacher, {"x": jnp.zeros((num, d))}, key, 0)[0]

    g = jax.grad(loss)(theta)
    return jnp.concatenate([g["mean"], g["std"]])

  draws = np.stack([np.asarray(grad(theta, jax.random.key(i))) for i in range(chunks)]).astype(np.float64)
  return draws.mean(0), draws.std(0, ddof=1) / math.sqrt(chunks)


def _quadrature(fn, mean, std, nodes=120):
  """E[fn(x)] for x ~ N(mean, diag(std^2)) in 1-D or 2-D by (tensor) Gauss-Hermite."""
  t, w = np.polynomial.hermite.hermgauss(nodes)
  t, w = t * math.sqrt(2), w / math.sqrt(math.pi)
  if len(mean) == 1:
    return np.sum(w * fn((mean[0] + std[0] * t)[:, None]))
  xx, yy = np.meshgrid(mean[0] + std[0] * t, mean[1] + std[1] * t, indexing="ij")
  return np.sum(np.outer(w, w).ravel() * fn(np.stack([xx.ravel(), yy.ravel()], -1)))


def _exact_gradient(target, theta):
  """Central differences of target(mean, std) (float64 numpy) in each coordinate of theta = (mean, std)."""
  flat = np.concatenate([theta["mean"], theta["std"]]).astype(np.float64)
  d, h, out = len(theta["mean"]), 1e-5, []
  for i in range(len(flat)):
    up, down = flat.copy(), flat.copy()
    up[i] += h
    down[i] -= h
    out.append((target(up[:d], up[d:]) - target(down[:d], down[d:])) / (2 * h))
  return np.array(out)


def _marginals(teacher, mean, std):
  """(log r(x), D_q(x) - D_p(x)) as functions of x (n, d), float64, for teacher N(mu, a^2) and generator N(mean, std^2)."""
  mu, a = np.asarray(teacher["mean"], np.float64), np.asarray(teacher["std"], np.float64)
  vq, vp = a**2 + SIGMA**2, std**2 + SIGMA**2

  def log_ratio(x):
    return np.sum(-0.5 * (x - mu) ** 2 / vq - 0.5 * np.log(vq) + 0.5 * (x - mean) ** 2 / vp + 0.5 * np.log(vp), -1)

  def delta(x):
    return SIGMA**2 * ((x - mean) / vp - (x - mu) / vq)

  return log_ratio, delta


CASES = [(dim, div) for dim in (1, 2) for div in F]


def _setup(dim):
  teacher = {"mean": jnp.array([0.2, -0.1][:dim]), "std": jnp.array([1.0, 0.8][:dim])}
  theta = {"mean": jnp.array([0.5, 0.3][:dim]), "std": jnp.array([1.2, 1.1][:dim])}
  return teacher, theta


def _f_divergence_target(teacher, divergence):
  def target(m, s):
    log_ratio, delta = _marginals(teacher, m, s)
    return _quadrature(lambda x: G[divergence](np.exp(log_ratio(x))) * np.sum(delta(x) ** 2, -1), m,
                       np.sqrt(s**2 + SIGMA**2))

  return target


def _close(mean, se, exact):
  return np.abs(mean - exact) < 4 * se + 1e-3 * np.abs(exact).max()


@pytest.mark.parametrize("dim,divergence", CASES)
def test_uni_instruct_gradient_is_the_exact_f_divergence_gradient(dim, divergence):
  teacher, theta = _setup(dim)
  objective = _objective(teacher, estimator="f_divergence", divergence=divergence)
  mean, se = _mc_gradient(objective, teacher, theta)
  exact = _exact_gradient(_f_divergence_target(teacher, divergence), theta)
  assert np.all(_close(mean, se, exact)), (mean, se, exact)


@pytest.mark.parametrize("divergence", ["fkl", "js", "chi2"])
def test_detached_ratio_decomposition_is_exact_only_for_the_shift(divergence):
  """The spec's (Lambda, 2g, c_DI) form with a stop-gradient ratio drops a term whose conditional mean vanishes
  only when dx0/dtheta is constant: exact for the generator's mean, measurably off for its scale."""
  teacher, theta = _setup(1)
  objective = _objective(teacher, estimator="f_divergence", divergence=divergence, ratio_path="detached")
  mean, se = _mc_gradient(objective, teacher, theta)
  exact = _exact_gradient(_f_divergence_target(teacher, divergence), theta)
  assert _close(mean, se, exact)[0], (mean, se, exact)
  assert abs(mean[1] - exact[1]) > 10 * se[1], (mean, se, exact)


@pytest.mark.parametrize("dim,divergence", CASES)
def test_detached_direction_is_sigma_squared_times_the_f_divergence_gradient(dim, divergence):
  teacher, theta = _setup(dim)
  objective = _objective(teacher, estimator="vsd", divergence=divergence)
  mean, se = _mc_gradient(objective, teacher, theta)

  def target(m, s):
    log_ratio, _ = _marginals(teacher, m, s)
    return SIGMA**2 * _quadrature(lambda x: F[divergence](np.exp(log_ratio(x))), m, np.sqrt(s**2 + SIGMA**2))

  exact = _exact_gradient(target, theta)
  assert np.all(_close(mean, se, exact)), (mean, se, exact)

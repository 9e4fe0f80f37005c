"""Few-step (consistency-style) student sampler in the EDM/VE convention."""
import jax
import jax.numpy as jnp


def multistep_student(denoise, x, sigmas, noises, cond=None):
  """Multistep sampling with K denoiser calls (NFE = K).

    x0 = D(x, sigmas[0]); then for k = 1..K-1: x0 = D(x0 + sigmas[k] * noises[k-1], sigmas[k]).
    x: (B, *shape) state at sigmas[0]; sigmas: the K positive levels, decreasing, optionally
    followed by one trailing 0 which is dropped; noises: (K-1, B, *shape) standard normals.
    K is taken from noises.shape[0] + 1.
    """
  sigmas = jnp.asarray(sigmas, x.dtype)
  num_levels = noises.shape[0] + 1
  if sigmas.shape[0] not in (num_levels, num_levels + 1):
    raise ValueError(f"{noises.shape[0]} noise draws need {num_levels} levels (+ optional trailing 0), "
                     f"got {sigmas.shape[0]} sigmas")
  x0 = denoise(x, sigmas[0], cond)
  if num_levels == 1:
    return x0

  def step(x0, level_and_noise):
    s, n = level_and_noise
    return denoise(x0 + s * n, s, cond), None

  x0, _ = jax.lax.scan(step, x0, (sigmas[1:num_levels], noises))
  return x0

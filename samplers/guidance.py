"""Classifier-free guidance as a denoiser transform."""
import jax.numpy as jnp


def classifier_free_guidance(denoise, scale, null_label):
  """Return D_w(x, s, c) = D(x, s, null) + scale * (D(x, s, c) - D(x, s, null)).

    Both branches are evaluated in ONE denoiser call on the concatenated 2B batch
    (conditional rows first). scale=1 is the plain conditional denoiser. `cond` must be an
    int32 (B,) label array; sigma may be a scalar or a (B,) array.
    """

  def guided(x, sigma, cond):
    if cond is None:
      raise ValueError("classifier-free guidance needs class labels; got cond=None")
    batch = x.shape[0]
    sigma = jnp.asarray(sigma)
    sigma2 = sigma if sigma.ndim == 0 else jnp.concatenate([sigma, sigma])
    cond2 = jnp.concatenate([cond, jnp.full_like(cond, null_label)])
    out = denoise(jnp.concatenate([x, x]), sigma2, cond2)
    cond_out, null_out = out[:batch], out[batch:]
    return null_out + scale * (cond_out - null_out)

  return guided

"""Defaults shared by every config. Each experiment config starts from `base()` and overrides what it needs."""

import ml_collections

# Logical axis -> mesh axis. Mesh {data: N, fsdp: 1} is pure data parallelism (size-1 fsdp replicates);
# {data: 1, fsdp: N} shards parameters and optimizer state (ZeRO-3 style).
DEFAULT_RULES = (
    ("embed", "fsdp"), ("mlp", None), ("conv_in", None), ("conv_out", "fsdp"), ("norm", None), ("vocab", None),
)


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict(dict(source="toy:moons", batch_size=512, flip=False))

  c.model = ml_collections.ConfigDict(dict(name="mlp", width=256, depth=3, emb_dim=128, noise_scale=1.0,
                                           conditional=False))
  c.parameterization = ml_collections.ConfigDict(dict(name="velocity", time_scale=999.0))
  c.objective = ml_collections.ConfigDict(dict(name="flow_matching", t_eps=1e-3, label_dropout=0.0))
  c.teacher = ml_collections.ConfigDict(dict(bundle="", workdir="", dtype="float32"))

  c.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                                           weight_decay=0.0, warmup_steps=100, schedule="constant",
                                           decay_steps=0, clip_norm=1.0))
  c.ema = ml_collections.ConfigDict(dict(decay=0.999, warmup=True))

  c.train = ml_collections.ConfigDict(dict(num_steps=1000, log_every=100, eval_every=0, ckpt_every=500,
                                           keep_last=2, keep_every=0))
  # In-training FID (off when fid_every is 0): fid_num samples of the EMA model at fid_steps (0: the sampler's
  # default) in fid_features ('inception', 'classifier:<folder>') against fid_ref (a data source or a
  # `distill fid stats` file; '' = data.source). The best checkpoint by FID is kept in workdir/best.
  c.eval = ml_collections.ConfigDict(dict(num_samples=2000, fid_every=0, fid_features="", fid_ref="", fid_num=1000,
                                          fid_steps=0))
  c.sampler = ml_collections.ConfigDict(dict(solver="euler", grid="uniform_t", steps=100, t_eps=1e-3,
                                             sigma_min=0.002, sigma_max=80.0, rho=7.0, guidance=1.0))

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  c.sharding = ml_collections.ConfigDict(dict(rules=DEFAULT_RULES))
  return c


def edm_sections(c: ml_collections.ConfigDict, sigma_data: float) -> None:
  """Switch a config to EDM preconditioning, the EDM loss and the EDM Heun sampler (rho = 7 grid)."""
  c.parameterization = ml_collections.ConfigDict(dict(name="edm", sigma_data=sigma_data))
  c.objective = ml_collections.ConfigDict(dict(name="edm", p_mean=-1.2, p_std=1.2, sigma_data=sigma_data,
                                               label_dropout=0.0))
  c.sampler.solver, c.sampler.grid, c.sampler.steps = "heun", "edm", 18

"""Tiny config for tests and smoke runs: a small MLP on toy:moons, a few steps, seconds on a CPU.

  distill train --config configs/tiny.py --workdir /tmp/tiny
"""

from configs import common


def get_config():
  c = common.base()
  c.model.update(width=32, depth=2, emb_dim=16)
  c.data.batch_size = 64
  c.optim.warmup_steps = 2
  c.train.update(num_steps=20, log_every=5, eval_every=0, ckpt_every=10, keep_last=2)
  c.eval.num_samples = 256
  c.sampler.steps = 8
  return c

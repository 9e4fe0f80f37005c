"""Tiny reflow pipeline for tests and smoke runs: configs/toy2d_reflow.py with small MLPs, 20 steps per stage and
128 pairs per store; seconds on a CPU.

  distill train --config configs/tiny_reflow.py --workdir /tmp/tiny_reflow
"""

from configs import toy2d_reflow


def get_config():
  c = toy2d_reflow.get_config()
  for name in ("teacher", "reflow", "distill"):
    stage = c.stages[name].config
    stage.model.update(width=32, depth=2, emb_dim=16)
    stage.data.batch_size = 64
    stage.train.update(num_steps=20, eval_every=20, ckpt_every=10, log_every=10)
    stage.eval.num_samples = 256
  c.stages.teacher.config.sampler.steps = 8
  c.stages.reflow.config.sampler.steps = 8
  c.stages.pairs.update(num=128, shard_size=64)
  c.stages.pairs_2rf.update(num=128, shard_size=64)
  return c

"""BOSS straightening fine-tune of a 2-D flow on its Bellman grid (compute the grid first with `distill boss`).

  distill boss --sampler T/export --steps 4 --out grid4.json
  distill train --config configs/toy2d_boss.py --workdir W --config.teacher.bundle=T/export \
      --config.objective.bellman_file=grid4.json --config.data.source=toy:checkerboard

Starts from the teacher, trains on fresh teacher trajectories cut at the grid's nodes, and samples (and exports)
with Euler on that grid.
"""

from configs import common, toy2d_teacher


def get_config():
  c = toy2d_teacher.get_config()
  c.objective = common.boss_objective()
  c.optim.update(learning_rate=2e-4, warmup_steps=100, schedule="constant", decay_steps=0)
  c.train.update(num_steps=2000, eval_every=1000, ckpt_every=1000)
  return c

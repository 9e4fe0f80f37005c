"""2-D flow-matching teacher (1-rectified flow) with a residual MLP.

  distill train --config configs/toy2d_teacher.py --workdir runs/moons --config.data.source=toy:moons
  distill train --config configs/toy2d_teacher.py --workdir runs/mine --config.data.source=npz:points.npz

Any (N, 2) float array stored under the key `points` works through `npz:`. Sampled with Euler on a uniform-t grid
(100 steps by default). About 1-2 minutes on 2 CPU cores.

Headline: energy distance to fresh data within ~2x of the data-vs-data floor at n = 4000 (docs/results/teachers.md,
section toy2d_teacher training, 2026-11-27, commit b07e616).
"""

from configs import common


def get_config():
  c = common.base()
  c.data.batch_size = 512
  c.train.num_steps = 4000
  c.train.log_every = 500
  c.train.eval_every = 2000
  c.train.ckpt_every = 1000
  c.optim.learning_rate = 2e-3
  c.optim.schedule, c.optim.decay_steps = "cosine", 4000
  c.eval.num_samples = 4000
  return c

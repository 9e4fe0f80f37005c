"""2-D DMD2 in one command: flow-matching teacher -> one-step generator by distribution matching (detached
fake-minus-teacher direction over the mean-abs normaliser) plus a non-saturating GAN, five critic steps per
generator step, sigma_init 80.

  distill train --config configs/toy2d_dmd2.py --workdir W --config.data.source=npz:P.npz [--config.teacher.workdir=T]
"""

from configs import toy2d_score


def get_config():
  c = toy2d_score.student("dmd2", 10_000, 1e-4, disc_init="random")
  c.optim.update(name="adamw", b1=0.9, weight_decay=0.01, warmup_steps=500, clip_norm=10.0)
  return toy2d_score.pipeline(c)

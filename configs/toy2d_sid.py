"""2-D SiD in one command: flow-matching teacher -> one-step generator by Score identity Distillation (alpha 1.2).

  distill train --config configs/toy2d_sid.py --workdir W --config.data.source=npz:P.npz \\
      [--config.teacher.workdir=T]
  distill export --workdir W --out B      # samplers.load(B).sample(key, n): one network evaluation

Data-free after the teacher: the generator only sees the teacher's and the fake score's denoisers.

Headline: on moons 1.87x the 100-step teacher's energy distance at one step (n = 262144, training seed 0;
docs/results/score_distillation.md, section score_2d, 2026-11-29, commit d9801ad).
"""

from configs import toy2d_score


def get_config():
  return toy2d_score.pipeline(toy2d_score.student("sid", 4000, 1e-4))

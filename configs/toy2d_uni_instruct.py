"""2-D Uni-Instruct in one command: flow-matching teacher -> one-step generator minimising an expanded
f-divergence (objective.divergence: rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys), the density ratio
from a discriminator trained on real data versus generator samples.

  distill train --config configs/toy2d_uni_instruct.py --workdir W --config.data.source=npz:P.npz \\
      --config.objective.divergence=fkl [--config.teacher.workdir=T]

The first 1000 generator steps use SiD(alpha = 1) while the discriminator warms up; over the divergence phase the
generator's learning rate follows a cosine to 0 (optim.decay_start = 1000; move it with
--config.stages.distill.config.optim.decay_start=S) while the critics keep theirs (critic_schedule = 'constant');
the exported generator is the EMA at 0.999 (0.99 left it moving between evaluations late in the decay).

Headline (one training seed, moons): the last step is 1.45x (jeffreys), 1.58x (rkl), 1.65x (fkl) the 100-step
teacher's energy distance, 0.69x / 0.75x / 0.79x the SiD warm-up's end (docs/results/score_distillation.md,
section divergence_2d_ema999; with EMA 0.99: 2.03x / 1.66x / 2.41x).
"""

from configs import toy2d_score


NUM_STEPS, DIVERGENCE_START = 4000, 1000


def get_config():
  student = toy2d_score.student("uni_instruct", NUM_STEPS, 1e-4, divergence="jeffreys",
                                divergence_start=DIVERGENCE_START, disc_init="random", critic_schedule="constant")
  student.optim.update(schedule="cosine", decay_start=DIVERGENCE_START, decay_steps=NUM_STEPS)
  student.ema.decay = 0.999
  return toy2d_score.pipeline(student)

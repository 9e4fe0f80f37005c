"""2-D Uni-Instruct in one command: flow-matching teacher -> one-step generator minimising an expanded
f-divergence (objective.divergence: rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys, the paper's best on
unconditional CIFAR-10). The density ratio comes from a discriminator trained on real data versus generator samples.

  distill train --config configs/toy2d_uni_instruct.py --workdir W --config.data.source=npz:P.npz \\
      --config.objective.divergence=fkl [--config.teacher.workdir=T]

The first 1000 generator steps use SiD(alpha = 1) while the discriminator warms up (Uni-Instruct's schedule).

Headline: on moons 1.9-3.5x the 100-step teacher's energy distance across the divergences measured (n = 262144,
training seed 0; docs/results/score_distillation.md, section score_2d, 2026-11-29, commit d9801ad).
"""

from configs import toy2d_score


def get_config():
  return toy2d_score.pipeline(toy2d_score.student("uni_instruct", 4000, 1e-4, divergence="jeffreys",
                                                  divergence_start=1000, disc_init="random"))

"""2-D Uni-Instruct in one command: flow-matching teacher -> one-step generator minimising an expanded
f-divergence (objective.divergence: rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys, the paper's best on
unconditional CIFAR-10). The density ratio comes from a discriminator trained on real data versus generator samples.

  distill train --config configs/toy2d_uni_instruct.py --workdir W --config.data.source=npz:P.npz \\
      --config.objective.divergence=fkl [--config.teacher.workdir=T]

The first 1000 generator steps use SiD(alpha = 1) while the discriminator warms up (Uni-Instruct's schedule); over
the divergence phase the generator's learning rate follows a cosine to 0 (optim.decay_start = 1000) while the fake
score and discriminator keep theirs (critic_schedule = 'constant'). At a constant rate the generator random-walks
once the fake score's error exceeds the shrinking signal (20-120x it on exact Gaussian ground truth,
scripts/diagnose_divergence.py), so the last step was worse than the warm-up's. Moving the warm-up's end
(--config.objective.divergence_start=S) leaves the decay's start; move it with
--config.stages.distill.config.optim.decay_start=S.

Headline (these defaults; one training seed so far): on moons the last step is 1.66x (rkl), 2.03x (jeffreys) and
2.41x (fkl) the 100-step teacher's energy distance; against the SiD warm-up's end 0.76x, 0.93x and 1.10x, where the
constant-rate defaults drifted well above it (n = 20000, 3 sample sets; docs/results/score_distillation.md, section
divergence_2d, 2026-12-07).
"""

from configs import toy2d_score


NUM_STEPS, DIVERGENCE_START = 4000, 1000


def get_config():
  student = toy2d_score.student("uni_instruct", NUM_STEPS, 1e-4, divergence="jeffreys",
                                divergence_start=DIVERGENCE_START, disc_init="random", critic_schedule="constant")
  student.optim.update(schedule="cosine", decay_start=DIVERGENCE_START, decay_steps=NUM_STEPS)
  return toy2d_score.pipeline(student)

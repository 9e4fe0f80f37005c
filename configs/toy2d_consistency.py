"""2-D consistency distillation in one command: EDM teacher (configs/toy2d_edm_teacher.py) -> consistency student
(iCT's recipe: lognormal pairs, pseudo-Huber, 1 / delta-sigma weights, the exponential curriculum, no EMA target),
started from the teacher and sampled in 1 to 4 network evaluations.

  distill train --config configs/toy2d_consistency.py --workdir W --config.data.source=npz:P.npz
  distill export --workdir W --out W/student && distill sample --bundle W/student --steps 1 ...
  ... --config.objective.mode=training      # consistency training (iCT): no teacher in the loss

Reference (spec reflow_trajectory_family.md §7.2-7.3, CIFAR-10 FID at 1 / 2 steps): CD 3.55 / 2.93, CT 8.70 / 5.83,
iCT 2.83 / 2.46. Headline (energy, n = 20000, 3 sets, sd ~2e-4; docs/results/trajectory.md, 2026-12-07): one step
5.0e-4 on moons, 8.0e-4 on 8gaussians (100-step flow teacher 5.1e-4 / 4.7e-4); iCT 2.9e-3 / 2.2e-3.
"""

from configs import common, toy2d_edm_teacher

SIGMA_MAX = 20.0  # the 2-D EDM teacher's sampler range


def get_config():
  student = common.consistency_stage(toy2d_edm_teacher.get_config(), num_steps=3000, learning_rate=2e-4,
                                     sigma_max=SIGMA_MAX, levels=(SIGMA_MAX, 1.5, 0.8, 0.3), s0=10, s1=160)
  stages = {"teacher": common.train_stage(toy2d_edm_teacher.get_config()),
            "distill": common.train_stage(student, teacher_stage="teacher")}
  c = common.pipeline(stages, "toy:moons")
  c.objective = c.stages.distill.config.objective
  return c

"""MNIST consistency distillation in one command: EDM teacher (configs/mnist_edm_teacher.py) -> consistency student
from the teacher's weights (iCT's recipe: lognormal pairs, pseudo-Huber, 1 / delta-sigma weights, the exponential
curriculum, no EMA target), sampled in 1 to 4 evaluations (levels 80, 2, 0.821, 0.3).

  distill train --config configs/mnist_consistency.py --workdir W --config.data.source=npz:../shared/data/mnist10k.npz
  ... --config.objective.mode=training      # consistency training (iCT), no teacher in the loss

Reference (spec reflow_trajectory_family.md §7.2-7.3, CIFAR-10 FID at 1 / 2 steps): CD 3.55 / 2.93, CT 8.70 / 5.83,
iCT 2.83 / 2.46. Headline here (classifier FID, 3 sets of 2000, docs/results/trajectory.md section
trajectory_mnist): CD 396.05 +- 11.23 / 289.21 +- 9.63 / 223.97 +- 1.08 at 1 / 2 / 4 steps, iCT 428.63 +- 12.60 /
287.54 +- 11.96 / 215.54 +- 5.71; the flow teacher at 4 Euler steps 472.06, at 50 steps 119.49.
"""

from configs import common, mnist_edm_teacher


def get_config():
  student = common.consistency_stage(mnist_edm_teacher.get_config(), num_steps=1000, learning_rate=1e-4,
                                     sigma_max=80.0, levels=(80.0, 2.0, 0.821, 0.3), s0=10, s1=320)
  stages = {"teacher": common.train_stage(mnist_edm_teacher.get_config()),
            "distill": common.train_stage(student, teacher_stage="teacher")}
  c = common.pipeline(stages, "tfds:mnist")
  c.objective = c.stages.distill.config.objective
  return c

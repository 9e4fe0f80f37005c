"""MNIST BOOT in one command: EDM teacher (configs/mnist_edm_teacher.py) -> a data-free one-step student
bootstrapping the signal of the teacher's trajectories (the data trains the teacher only).

  distill train --config configs/mnist_boot.py --workdir W --config.data.source=npz:../shared/data/mnist10k.npz

Reference (spec reflow_trajectory_family.md §3; from memory, unverified): one-step FID about 9 on FFHQ-64 and 23 on
LSUN-Bedroom. Headline here (classifier FID, 3 sets of 2000, docs/results/trajectory.md section trajectory_mnist):
one step 569.39 +- 12.17, behind consistency distillation's 396.05 from the same teacher at the same 1000 steps.
"""

from configs import common, mnist_edm_teacher


def get_config():
  student = common.boot_stage(mnist_edm_teacher.get_config(), num_steps=1000, learning_rate=1e-4, sigma_max=80.0)
  stages = {"teacher": common.train_stage(mnist_edm_teacher.get_config()),
            "distill": common.train_stage(student, teacher_stage="teacher")}
  c = common.pipeline(stages, "tfds:mnist")
  c.objective = c.stages.distill.config.objective
  return c

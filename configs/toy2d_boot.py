"""2-D BOOT in one command: EDM teacher (configs/toy2d_edm_teacher.py) -> a data-free one-step student that
bootstraps the signal of the teacher's trajectories from noise alone (the data only trains the teacher; the BOOT
stage reads nothing but the batch size from it).

  distill train --config configs/toy2d_boot.py --workdir W --config.data.source=npz:P.npz
  distill export --workdir W --out W/student && distill sample --bundle W/student --steps 1 ...

Reference (spec reflow_trajectory_family.md §3; from memory, unverified): one-step FID about 9 on FFHQ-64 and 23 on
LSUN-Bedroom, behind CD / iCT but without data. Headline (energy, n = 20000, 3 sets; docs/results/trajectory.md,
2026-12-07): 1.9e-3 +- 3e-4 on moons, 1.4e-3 +- 1e-4 on 8gaussians (100-step flow teacher 5.1e-4 / 4.7e-4).
"""

from configs import common, toy2d_edm_teacher

SIGMA_MAX = 20.0  # the 2-D EDM teacher's sampler range


def get_config():
  student = common.boot_stage(toy2d_edm_teacher.get_config(), num_steps=3000, learning_rate=2e-4,
                              sigma_max=SIGMA_MAX)
  stages = {"teacher": common.train_stage(toy2d_edm_teacher.get_config()),
            "distill": common.train_stage(student, teacher_stage="teacher")}
  c = common.pipeline(stages, "toy:moons")
  c.objective = c.stages.distill.config.objective
  return c

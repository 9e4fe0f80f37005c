"""2-D progressive distillation in one command: flow-matching teacher (configs/toy2d_teacher.py) -> rounds of
Salimans & Ho's N -> N/2 distillation from 64 teacher steps to 1 (stages pd32, pd16, ..., pd1), each round started
from and taught by the previous one; the exported final student samples in one Euler step.

  distill train --config configs/toy2d_progressive.py --workdir W --config.data.source=npz:P.npz
  distill export --workdir W --out W/student && distill sample --bundle W/student --steps 1 ...

Every round's bundle is in W/pd<N>/export (N-step sampler). Reference (spec reflow_trajectory_family.md §7.1,
CIFAR-10 FID at 1 / 2 / 4 / 8 steps): 9.12 / 4.51 / 3.00 / 2.57. Headline (energy, n = 20000, 3 sets, sd ~1.5e-4;
docs/results/trajectory.md, 2026-12-07): one step 6.6e-4 on moons, 5.3e-4 on 8gaussians, against the teacher's
5.1e-4 / 4.7e-4 at 100 Euler steps and 1.15 / 1.39 at one.
"""

from configs import common, toy2d_teacher

TEACHER_STEPS, ROUND_STEPS = 64, 800


def get_config():
  c = common.progressive_pipeline(toy2d_teacher.get_config(), TEACHER_STEPS, ROUND_STEPS, 5e-4, "toy:moons")
  return c

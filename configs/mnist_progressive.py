"""MNIST progressive distillation in one command: flow-matching teacher (configs/mnist_teacher.py) -> rounds of
Salimans & Ho's N -> N/2 distillation from 64 teacher Euler steps to 1 (stages pd32, ..., pd1, 300 updates each,
the rate decayed linearly to 0 within each round); the exported final student samples in one step.

  distill train --config configs/mnist_progressive.py --workdir W --config.data.source=npz:../shared/data/mnist10k.npz

Every round's bundle is in W/pd<N>/export. Reference (spec reflow_trajectory_family.md §7.1, CIFAR-10 FID at 1 / 2 /
4 / 8 steps): 9.12 / 4.51 / 3.00 / 2.57. Headline here (classifier FID, 3 sets of 2000, docs/results/trajectory.md
section trajectory_mnist): 317.92 +- 11.04 / 235.07 +- 11.54 / 167.53 +- 9.93 at 1 / 2 / 4 steps against the
teacher's 3842.33 / 1513.33 / 472.06 at the same Euler steps (119.49 +- 10.56 at 50).
"""

from configs import common, mnist_teacher


def get_config():
  return common.progressive_pipeline(mnist_teacher.get_config(), 64, 300, 1e-4, "tfds:mnist")

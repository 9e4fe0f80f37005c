"""MNIST EDM teacher: configs/mnist_teacher.py's U-Net and budget with EDM preconditioning and loss, Heun on the
rho = 7 grid (18 steps, 35 NFE); the teacher of the consistency and BOOT students (configs/mnist_consistency.py,
configs/mnist_boot.py), whose parameterisations extend EDM's.

  distill train --config configs/mnist_edm_teacher.py --workdir runs/mnist_edm \\
      --config.data.source=npz:../shared/data/mnist10k.npz

Headline: classifier FID 168.28 +- 10.16 at its 18-step Heun grid (3 sets of 2000; the flow-matching teacher of
configs/mnist_teacher.py: 119.49 +- 10.56 at 50 Euler steps; docs/results/trajectory.md, section trajectory_mnist).
"""

from configs import common, mnist_teacher


def get_config():
  c = mnist_teacher.get_config()
  common.edm_sections(c, sigma_data=0.5)
  c.model.noise_scale = 100.0  # c_noise = ln(sigma)/4 is O(1): spread it over the sinusoidal frequencies
  return c

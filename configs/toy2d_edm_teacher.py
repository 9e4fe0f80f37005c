"""2-D EDM teacher: the toy2d_teacher run with EDM preconditioning and loss, Heun on the rho = 7 sigma grid.

  distill train --config configs/toy2d_edm_teacher.py --workdir runs/moons_edm --config.data.source=toy:moons
"""

from configs import common, toy2d_teacher


def get_config():
  c = toy2d_teacher.get_config()
  common.edm_sections(c, sigma_data=1.0)
  c.model.noise_scale = 100.0  # c_noise = ln(sigma)/4 is O(1): spread it over the sinusoidal frequencies
  c.sampler.steps = 32
  c.sampler.sigma_max = 20.0
  return c

"""2-D EDM teacher: EDM preconditioning and loss, Heun sampler on the rho = 7 sigma grid.

  distill train --config configs/toy2d_edm_teacher.py --workdir runs/moons_edm --config.data.source=toy:moons
"""

from configs import common


def get_config():
  c = common.base()
  common.edm_sections(c, sigma_data=1.0)
  c.model.noise_scale = 100.0  # c_noise = ln(sigma)/4 is O(1): spread it over the sinusoidal frequencies
  c.data.batch_size = 512
  c.train.num_steps = 4000
  c.train.log_every = 500
  c.train.eval_every = 2000
  c.train.ckpt_every = 1000
  c.optim.learning_rate = 2e-3
  c.optim.schedule, c.optim.decay_steps = "cosine", 4000
  c.eval.num_samples = 4000
  c.sampler.steps = 32
  c.sampler.sigma_max = 20.0
  return c

"""Tiny adversarial (discriminator pool) config for tests and smoke runs: a one- and two-level student on toy:moons
judged by a small pool on a teacher's MLP features. Needs a teacher with the same MLP (e.g. configs/tiny.py's):

  distill train --config configs/tiny_pool.py --workdir /tmp/pool --config.teacher.bundle=/tmp/tiny/export
"""

from configs import common, tiny

LEVELS = (999.0, 1.0)


def get_config():
  c = tiny.get_config()
  pool = common.pool_section(("block0", "block1"), groups=2, heads_per_slot=3, sample_per_slot=1, refresh=0.05,
                             hidden=8, learning_rate=1e-3)
  c.objective = common.adversarial_objective(pool, levels=LEVELS, level_probs=(0.7, 0.3))
  c.optim.update(learning_rate=1e-4, b1=0.0)
  common.schedule_sampler(c, LEVELS)
  return c

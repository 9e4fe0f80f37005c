"""Tiny two-network config: groups 'a' (every step) and 'b' (every `b_every` steps, own learning rate).

With --config.teacher.bundle=B group 'a' regresses the teacher's velocity; --config.objective.a_from_teacher=True
also initialises it with the teacher's parameters.

  distill train --config configs/tiny_two_network.py --workdir /tmp/two
"""

import ml_collections

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.objective = ml_collections.ConfigDict(dict(name="two_network_demo", b_every=2, b_learning_rate=3e-3,
                                               a_from_teacher=False))
  return c

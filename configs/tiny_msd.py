"""Tiny multi-student config for tests and smoke runs: 4 small class-conditional MLP students (the flow-matching
objective of configs/tiny.py, from random weights) on 4096 labelled points of 8 Gaussians, two classes per student.

  distill train --config configs/tiny_msd.py --workdir /tmp/msd [--config.multi_student.k=2]
"""

from configs import common, tiny


def get_config():
  c = tiny.get_config()
  c.data.source = "toyset:8gaussians:4096"
  c.model.conditional = True
  c.multi_student = common.multi_student_section(4)
  c.mesh.student = 1
  return c

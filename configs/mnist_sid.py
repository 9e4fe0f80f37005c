"""MNIST SiD in one command: U-Net teacher -> one-step generator by Score identity Distillation (alpha 1.2).

  distill train --config configs/mnist_sid.py --workdir runs/mnist_sid \
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
"""

from configs import mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("sid", 1000, 5e-5))

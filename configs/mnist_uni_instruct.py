"""MNIST Uni-Instruct in one command: U-Net teacher -> one-step generator minimising an expanded f-divergence
(objective.divergence: rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys) with a discriminator's density
ratio; SiD(alpha = 1) for the first 300 steps while the discriminator warms up.

  distill train --config configs/mnist_uni_instruct.py --workdir runs/mnist_ui \
      --config.data.source=npz:../shared/data/mnist10k.npz --config.objective.divergence=fkl \
      [--config.teacher.workdir=runs/mnist]
"""

from configs import mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("uni_instruct", 1000, 5e-5, divergence="jeffreys",
                                                  divergence_start=300, gan_weight=0.0))

"""MNIST SiDA in one command: U-Net teacher -> one-step generator by SiD (alpha 1) plus the non-saturating GAN term of
a discriminator trained on real digits versus generator samples, weighted as SiDA weighs it (1e-4 x 784 = 0.078
relative to the SiD term, both over the normaliser; common.sida_gan_weight). The discriminator is a copy of the
teacher's U-Net initialised from the teacher (SiDA's head sits on the teacher-initialised fake score).
Measured on 2 CPU cores (scripts/benchmark_score_mnist.py, 2000 samples, classifier FID; teacher of
configs/mnist_teacher.py at 50 steps: 104.43, data floor 34.95): the best in-training checkpoint (step 1000) scores
134.72, 1.29x the teacher, still falling at the end of the budget (in-training FID 171 at step 600, 149 at 1000).

  distill train --config configs/mnist_sida.py --workdir runs/mnist_sida \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
"""

from configs import common, mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("sida", 1000, 5e-5, gan_weight=common.sida_gan_weight((28, 28, 1))))

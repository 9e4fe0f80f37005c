"""MNIST SiDA in one command: U-Net teacher -> one-step generator by SiD (alpha 1) plus the non-saturating GAN term of
a discriminator trained on real digits versus generator samples, weighted as SiDA weighs it (1e-4 x 784 = 0.078
relative to the SiD term, both over the normaliser; common.sida_gan_weight). The discriminator is a copy of the
teacher's U-Net initialised from the teacher (SiDA's head sits on the teacher-initialised fake score).
Measured on 2 CPU cores (jax 0.10.2; 53 min; scripts/benchmark_score_mnist.py, 2000 samples, classifier FID; teacher
of configs/mnist_teacher.py at 50 steps: 108.07, data floor 32.47): the best in-training checkpoint (step 1400) scores
121.60, 1.13x the teacher, the last step 124.71 (1.15x); data-free SiD (configs/mnist_sid.py): 135.19. In-training FID
(1000 samples) every 100 steps oscillates under the constant learning rate: 282, 216, 211, 206, 158, 140, 139, 157, 142,
133 (step 1000), 143, 150, 109, 104, 136, 131, 162, 182, 158, 145.

  distill train --config configs/mnist_sida.py --workdir runs/mnist_sida \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
The measured run kept its best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \\
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier
"""

from configs import common, mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("sida", 2000, 5e-5, gan_weight=common.sida_gan_weight((28, 28, 1))))

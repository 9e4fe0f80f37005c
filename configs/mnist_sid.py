"""MNIST SiD in one command: U-Net teacher -> one-step generator by Score identity Distillation (alpha 1.2).
Measured on 2 CPU cores (jax 0.10.2; 17 min; scripts/benchmark_score_mnist.py, 2000 samples, classifier FID; teacher
of configs/mnist_teacher.py at 100 Euler steps: 101.20, at 50: 108.07, Heun 50 steps 97.38, RK45 94.89; data floor
32.47): the best in-training checkpoint (step 900) scores 135.19, 1.34x the 100-step teacher. In-training FID (1000
samples) every 100 steps: 400, 248, 270, 242, 192, 178, 173, 164, 152, 184 (constant learning rate; the generator
still oscillates).

  distill train --config configs/mnist_sid.py --workdir runs/mnist_sid \
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]

The measured run also kept its best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier
"""

from configs import mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("sid", 1000, 5e-5))

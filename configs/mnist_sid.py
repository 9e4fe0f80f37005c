"""MNIST SiD in one command: U-Net teacher -> one-step generator by Score identity Distillation (alpha 1.2).
Measured on 2 CPU cores (31 min; scripts/benchmark_score_mnist.py, 2000 samples, classifier FID; teacher of
configs/mnist_teacher.py at 50 steps: 104.43, data floor 34.95): the best in-training checkpoint (step 900) scores
157.16, 1.50x the teacher (configs/mnist_sida.py, with a discriminator: 1.29x).

  distill train --config configs/mnist_sid.py --workdir runs/mnist_sid \
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]

The measured run also kept its best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier
"""

from configs import mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("sid", 1000, 5e-5))

"""MNIST SiD in one command: U-Net teacher -> one-step generator by Score identity Distillation (alpha 1.2).

  distill train --config configs/mnist_sid.py --workdir runs/mnist_sid \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]

The measured run also kept its best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \\
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier

Headline: classifier FID 135.19 (2000 samples; best in-training checkpoint, step 900), 1.34x the teacher's 101.20 at
100 Euler steps (docs/results/score_distillation.md, section score_mnist, 2026-12-02, commit dd25534).
"""

from configs import mnist_score


def get_config():
  return mnist_score.pipeline(mnist_score.student("sid", 1000, 5e-5))

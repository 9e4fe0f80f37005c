"""MNIST SiDA in one command: U-Net teacher -> one-step generator by SiD (alpha 1) plus the non-saturating GAN term of
a discriminator trained on real digits versus generator samples. The discriminator is a copy of the teacher's U-Net
initialised from the teacher (SiDA's head sits on the teacher-initialised fake score). Generator learning rate 1e-4 on
a cosine decay to 0 over 1600 steps, fake score and discriminator at a constant 1e-4 (critic_schedule); GAN weight 0.31
relative to the SiD term (both over the normaliser), 4x SiDA's per-pixel rule (common.sida_gan_weight).

  distill train --config configs/mnist_sida.py --workdir runs/mnist_sida \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
The measured runs kept their best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \\
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier \\
  --config.stages.distill.config.eval.fid_num=2000

Headline: classifier FID 108.89 +- 11.55 over three training seeds (five sets of 2000 samples each), the teacher at
Heun 50 steps 107.13 +- 7.61 (docs/results/score_distillation.md, section score_mnist, 2026-12-06, commit 235a89f).
"""

from configs import mnist_score

NUM_STEPS = 1600


def get_config():
  c = mnist_score.student("sida", NUM_STEPS, 1e-4, gan_weight=0.31, critic_schedule="constant")
  c.optim.update(schedule="cosine", decay_steps=NUM_STEPS)
  c.ema.decay = 0.995
  return mnist_score.pipeline(c)

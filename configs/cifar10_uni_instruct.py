"""CIFAR-10 Uni-Instruct at paper scale (GPUs): one-step generator from an EDM DDPM++ teacher.

  distill train --config configs/cifar10_uni_instruct.py --workdir W --config.teacher.workdir=T \
      [--config.objective.divergence=fkl]

run_uni_instruct.sh settings (spec section 2.8): jeffreys (the paper's best unconditional, FID 1.46), sigma_init 2.5,
batch 256, Adam lr 1e-5 betas (0, 0.999), generator frozen for the first 100k images (391 steps), SiD(alpha = 1)
until 200k images (782 steps), then the f-divergence plus the adversarial term; its relative weight
lsg_gan / lsg * C*H*W = 1e-4 * 3072 over the per-sample normaliser; 300M images (1.17M iterations). Deviations:
the discriminator is a separate copy of the teacher network (the paper shares the fake score's encoder), its loss
is not weighted by lambda(sigma), and the ratio enters pathwise (exact gradient; see the objective's docstring).
"""

from configs import cifar10_sid


def get_config():
  c = cifar10_sid.distill_config("uni_instruct", divergence="jeffreys", generator_start=391, divergence_start=782,
                                 gan_weight=0.3072)
  c.train.num_steps = 1_170_000
  return c

"""MNIST SiDA in one command: U-Net teacher -> one-step generator by SiD (alpha 1) plus the non-saturating GAN term of
a discriminator trained on real digits versus generator samples. The discriminator is a copy of the teacher's U-Net
initialised from the teacher (SiDA's head sits on the teacher-initialised fake score).

Settings chosen by measurement (jax 0.10.2, 2 CPU cores; scripts/benchmark_score_mnist.py --export best, 2000 samples,
classifier FID; teacher of configs/mnist_teacher.py: 146.89 / 108.07 / 101.20 at 16 / 50 / 100 Euler steps, data
floor 32.47):
- Learning rate 1e-4 on a cosine decay to 0 over 1600 steps for the generator; the fake score and the discriminator
  keep a constant 1e-4 (critic_schedule). GAN weight 0.31 relative to the SiD term (both over the normaliser), 4x
  SiDA's per-pixel rule on 28x28x1 (0.078, common.sida_gan_weight).
- EMA: the warm-up decay (1 + n) / (10 + n) stays below the 0.995 cap until step 1790, so over 1600 steps the
  average is the warm-up's alone.
- Best in-training checkpoint (step 1400, seed 0): 94.73 on sample set 0; precision 0.671, recall 0.835 (teacher
  0.675 / 0.882), KID 242 against the teacher's 370. In-training FID (2000 samples) every 100 steps: 297, 229, 201,
  166, 150, 154, 114, 152, 140, 135, 128, 118, 105, 99.4, 99.5, 99.6. 63 min on 2 cores, shared with a second run.
- Three training seeds, each scored on 5 sample sets of 2000 (--sample_seeds 5): seed 0 100.24 +- 7.42, seed 1
  122.01 +- 6.89 (best step 1600), seed 2 104.43 +- 6.03 (best step 800); over the runs 108.89 +- 11.55. The
  teacher at Heun 50 steps (99 NFE) on the same sets: 107.13 +- 7.61; seed 0 is below it on all five sets (mean
  difference -6.89), seed 2 on three (-2.70), seed 1 on none (+14.88). With 2000 samples, sampling noise alone moves
  FID by about 7. Teacher on set 0 only: Heun 50 steps 97.38, adaptive RK45 (261 NFE, the ODE's limit) 94.89.
- The same learning rate at GAN weight 0.78 gave 107.17 (seed 0, best step 1400) and 143.54 (seed 1, best step 600,
  after which its in-training FID rose from 125 to 155), on sample set 0.
- Compared earlier at learning rate 5e-5 (the generator on the same cosine decay): GAN weight 0.78 with constant
  critics, 109.06 (best step 1100, 1000-sample in-training FID), and over 2000 steps 115.13; with critics decaying
  with the generator, 0.78: 119.48, 0.31: 110.39; 0.078 over 2000 steps: 118.54; GAN weight 2.0: 137.10 and 5.0:
  149.76 (constant critics, stopped at step 900; higher GAN weights oscillate more and lose recall). Learning rate
  2e-4 at GAN weight 0.78 oscillated (in-training FID 142 at best, 146-212 after it) and was stopped at step 1000.

  distill train --config configs/mnist_sida.py --workdir runs/mnist_sida \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
The measured runs kept their best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \\
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier \\
  --config.stages.distill.config.eval.fid_num=2000
"""

from configs import mnist_score

NUM_STEPS = 1600


def get_config():
  c = mnist_score.student("sida", NUM_STEPS, 1e-4, gan_weight=0.31, critic_schedule="constant")
  c.optim.update(schedule="cosine", decay_steps=NUM_STEPS)
  c.ema.decay = 0.995
  return mnist_score.pipeline(c)

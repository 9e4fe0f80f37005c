"""MNIST SiDA in one command: U-Net teacher -> one-step generator by SiD (alpha 1) plus the non-saturating GAN term of
a discriminator trained on real digits versus generator samples. The discriminator is a copy of the teacher's U-Net
initialised from the teacher (SiDA's head sits on the teacher-initialised fake score).

Settings chosen by measurement (jax 0.10.2, 2 CPU cores; scripts/benchmark_score_mnist.py --export best, 2000 samples,
classifier FID; teacher of configs/mnist_teacher.py at 50 steps: 108.07, at 16: 146.89, data floor 32.47):
- GAN weight 0.31 relative to the SiD term (both over the normaliser): about the preset's CIFAR-10 value (1e-4 x 3072),
  4x SiDA's per-pixel rule on 28x28x1 (0.078, common.sida_gan_weight). 1600 steps, generator learning rate on a cosine
  decay to 0 (critics decay with it), EMA 0.995.
- Best in-training checkpoint (step 700) 110.39 (1.02x the teacher; KID 318 against the teacher's 406).
  In-training FID (1000 samples) every 100 steps: 302, 212, 173, 190, 170, 147, 123, 145, 150, 142, 139, 143, 142, 144,
  143, 142. Wall-clock 59 min sharing the 2 cores with one or two other runs (an unshared SiDA run trains at about
  1.05 steps/s, so roughly 30 min alone; not timed).
- The same settings with GAN weight 0.078 (SiDA's per-pixel rule) over 2000 steps (cosine over 2000): best (step 1600)
  118.54; with 0.78 (1600 steps): best (step 1100) 119.48. The earlier constant-learning-rate, EMA 0.99, 0.078, 2000-step config: best (step 1400) 121.60.
- Every run's in-training FID rises after its minimum while precision rises and recall falls, even as the learning
  rate decays; the best checkpoint is kept by in-training FID for that reason.

  distill train --config configs/mnist_sida.py --workdir runs/mnist_sida \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
The measured runs kept their best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \\
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier
"""

from configs import mnist_score

NUM_STEPS = 1600


def get_config():
  c = mnist_score.student("sida", NUM_STEPS, 5e-5, gan_weight=0.31)
  c.optim.update(schedule="cosine", decay_steps=NUM_STEPS)
  c.ema.decay = 0.995
  return mnist_score.pipeline(c)

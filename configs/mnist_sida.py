"""MNIST SiDA in one command: U-Net teacher -> one-step generator by SiD (alpha 1) plus the non-saturating GAN term of
a discriminator trained on real digits versus generator samples. The discriminator is a copy of the teacher's U-Net
initialised from the teacher (SiDA's head sits on the teacher-initialised fake score).

Settings chosen by measurement (jax 0.10.2, 2 CPU cores; scripts/benchmark_score_mnist.py --export best, 2000 samples,
classifier FID; teacher of configs/mnist_teacher.py: 146.89 / 108.07 / 101.20 at 16 / 50 / 100 Euler steps, data
floor 32.47):
- GAN weight 0.78 relative to the SiD term (both over the normaliser), 10x SiDA's per-pixel rule on 28x28x1 (0.078,
  common.sida_gan_weight); 1600 steps; the generator's learning rate on a cosine decay to 0 while the fake score and
  discriminator keep a constant one (critic_schedule); EMA 0.995.
- Best in-training checkpoint (step 1100): 109.06, 1.08x the 100-step teacher (1.01x the 50-step one); KID 287 against
  the 100-step teacher's 370. In-training FID (1000 samples) every 100 steps: 227, 199, 174, 182, 163, 152, 149, 135,
  135, 142, 124, 129, 137, 134, 129, 127. 33 min on 2 cores, partly shared with a benchmark run.
- Compared in the same session (each 'best' by in-training FID): the critics decaying with the generator, GAN weight
  0.78: 119.48, 0.31: 110.39 (its in-training FID rose from 123 to 142 after step 700), 0.078 over 2000 steps: 118.54;
  the earlier constant-learning-rate, EMA 0.99, 0.078, 2000-step config: 121.60. With decaying critics the
  in-training FID rose after its minimum while precision rose and recall fell; constant critics damp that.
- Compared in a later session (constant critics, best checkpoint by a 2000-sample in-training FID): this config over
  2000 steps (cosine to step 2000; best at the last step): 115.13; GAN weight 2.0: 137.10 and 5.0: 149.76 (both
  stopped at step 900 for time, best at steps 600 and 700; higher GAN weights oscillate more and lose recall).

  distill train --config configs/mnist_sida.py --workdir runs/mnist_sida \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
The measured runs kept their best checkpoint by in-training FID (distill train-classifier first):
  --config.stages.distill.export=best --config.stages.distill.config.eval.fid_every=100 \\
  --config.stages.distill.config.eval.fid_features=classifier:runs/mnist_classifier
"""

from configs import mnist_score

NUM_STEPS = 1600


def get_config():
  c = mnist_score.student("sida", NUM_STEPS, 5e-5, gan_weight=0.78, critic_schedule="constant")
  c.optim.update(schedule="cosine", decay_steps=NUM_STEPS)
  c.ema.decay = 0.995
  return mnist_score.pipeline(c)

"""MNIST teacher sized for a 2-core CPU: 0.6M-parameter U-Net (16-32-64, attention only in the middle block),
flow matching, Euler 50 steps.

  distill train --config configs/mnist_teacher.py --workdir runs/mnist \\
      --config.data.source=npz:../shared/data/mnist10k.npz      # or tfds:mnist where it is available

Default budget: 2000 steps x 64 images = 128k images (about 32 minutes on this 2-core CPU, ~68 images/s). Pass
--config.model.conditional=True --config.objective.label_dropout=0.1 for a class-conditional model that supports
classifier-free guidance (--config.sampler.guidance=2.0).

Headline: classifier FID 108.07 at its 50 Euler steps, 101.20 at 100 (2000 samples; docs/results/score_distillation.md,
sections score_mnist, 2026-12-02, commits dd25534 and 5228d24; training time in docs/results/teachers.md).
"""

import ml_collections

from configs import common


def get_config():
  c = common.base()
  c.data = ml_collections.ConfigDict(dict(source="tfds:mnist", batch_size=64, flip=False))
  c.model = ml_collections.ConfigDict(dict(name="unet", channels=(16, 32, 64), num_blocks=1, attn_resolutions=(),
                                           dropout=0.0, noise_scale=1.0, conditional=False,
                                           compute_dtype="float32"))
  c.optim.learning_rate = 2e-3
  c.optim.warmup_steps = 200
  c.optim.schedule, c.optim.decay_steps = "cosine", 2000
  c.ema.decay = 0.999
  c.train.update(num_steps=2000, log_every=100, eval_every=1000, ckpt_every=250)
  c.eval.num_samples = 64
  c.sampler.update(solver="euler", grid="uniform_t", steps=50)
  c.mesh.update(data=-1, fsdp=1)
  return c

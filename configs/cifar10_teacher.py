"""CIFAR-10 EDM teacher at paper scale (DDPM++ size, ~56M parameters) for GPUs/TPUs.

  distill train --config configs/cifar10_teacher.py --workdir gs://bucket/cifar10_edm

EDM (Karras et al. 2022) settings: channels 128-256-256-256, 4 blocks per level, attention at 16x16, dropout 0.13,
batch 512, Adam lr 1e-3 with 10M-image warm-up ramp, EMA half-life 0.5M images, horizontal flips, Heun 18 steps
(NFE 35); the paper reports FID 1.97 (unconditional) with augmentation, which this config does not implement.
"""

import ml_collections

from configs import common


def get_config():
  c = common.base()
  common.edm_sections(c, sigma_data=0.5)
  c.data = ml_collections.ConfigDict(dict(source="tfds:cifar10", batch_size=512, flip=True))
  c.model = ml_collections.ConfigDict(dict(name="unet", channels=(128, 256, 256, 256), num_blocks=4,
                                           attn_resolutions=(16,), dropout=0.13, noise_scale=1.0,
                                           conditional=False, compute_dtype="float32"))
  c.optim.update(learning_rate=1e-3, warmup_steps=20000, clip_norm=0.0)
  c.ema.update(decay=0.99993, warmup=False)  # half-life 0.5M images at batch 512
  c.train.update(num_steps=400_000, log_every=500, eval_every=20_000, ckpt_every=10_000, keep_every=50_000)
  c.eval.num_samples = 256
  return c

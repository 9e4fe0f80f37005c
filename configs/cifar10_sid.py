"""CIFAR-10 SiD at paper scale (GPUs): one-step generator from an EDM DDPM++ teacher (configs/cifar10_teacher.py).

  distill train --config configs/cifar10_sid.py --workdir W --config.teacher.workdir=T

Official run_sid.sh settings (spec shared/specs/divergence_family.md section 6): alpha 1.2, sigma_init 2.5,
generator sigma Karras u <= 0.8 (sigma <= 24.4), fake-score sigma log-normal(-1.2, 1.2), batch 256, Adam lr 1e-5
with betas (0, 0.999) for both networks, dropout 0.13, EMA half-life 0.5M images, 500M images (about 1.95M
iterations of one fake-score and one generator step). Reported one-step FID 1.92 (unconditional).
"""

from configs import cifar10_teacher, common


def distill_config(method: str, **objective):
  c = cifar10_teacher.get_config()
  c.objective = common.score_distillation_objective(method, **objective)
  c.data.batch_size = 256
  c.optim.update(learning_rate=1e-5, b1=0.0, b2=0.999, eps=1e-8, warmup_steps=0, clip_norm=0.0)
  c.ema.update(decay=0.5 ** (256 / 500_000), warmup=False)  # half-life 0.5M images
  c.train.update(num_steps=1_950_000, log_every=500, eval_every=20_000, ckpt_every=10_000, keep_every=100_000)
  c.eval.update(fid_every=20_000, fid_features="inception", fid_num=10_000)
  common.one_step_sampler(c)
  return c


def get_config():
  return distill_config("sid")

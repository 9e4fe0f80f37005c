"""MNIST adversarial distillation with a discriminator pool (NitroFusion) in one command: U-Net teacher -> 10k teacher
pairs (20 Euler steps) -> a student, initialised from the teacher, trained at four noise levels (one-step level 999
and backward-simulated inputs at 3, 1, 1/3) against a pool of small heads on the frozen teacher's U-Net features,
the teacher's samples as the real set. The exported student samples in 1 to 4 steps from the same weights.

  distill train --config configs/mnist_nitro.py --workdir runs/mnist_nitro \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]
  distill sample --sampler runs/mnist_nitro/export --num 64 --steps 4 --out S.npz

Pool: 4 noise groups x 4 heads on teacher levels 1, 2 and the middle block, global and local heads (96 heads, one
per group drawn per slot and step), 1% re-initialised per step. Headline (scripts/benchmark_pool_mnist.py --steps 600,
docs/results/adversarial.md, 2026-12-07): classifier FID 81.6 +- 4.6 at 4 steps, 159.4 at 2, 567 at 1 (single head:
243.5, 180.1, 347; 50-step teacher 119.5 +- 10.6).
"""

from configs import common, mnist_teacher

LEVELS = (999.0, 3.0, 1.0, 1.0 / 3.0)  # RF times t = 0.001, 0.25, 0.5, 0.75 as EDM sigma = (1 - t) / t
LEVEL_PROBS = (0.7, 0.1, 0.1, 0.1)  # LADD's, as NitroFusion's bottom-up refinement suggests


def student(num_steps: int = 1500, **pool):
  c = mnist_teacher.get_config()
  pool_config = common.pool_section(("level1", "level2", "mid"), kinds=("global", "local"), hidden=32,
                                    learning_rate=2e-4, **pool)
  c.objective = common.adversarial_objective(pool_config, levels=LEVELS, level_probs=LEVEL_PROBS)
  c.data.batch_size = 32
  c.optim.update(learning_rate=2e-5, b1=0.0, warmup_steps=100, schedule="constant", decay_steps=0)
  c.ema.update(decay=0.999, warmup=True)
  c.train.update(num_steps=num_steps, log_every=50, eval_every=num_steps, ckpt_every=250)
  common.schedule_sampler(c, LEVELS)
  return c


def get_config():
  stages = {
      "teacher": common.train_stage(mnist_teacher.get_config()),
      "pairs": common.pairs_stage("teacher", num=10_000, seed=1, steps=20),
      "distill": common.train_stage(student(), data_stage="pairs", teacher_stage="teacher"),
  }
  c = common.pipeline(stages, "tfds:mnist")
  c.objective = c.stages.distill.config.objective
  return c

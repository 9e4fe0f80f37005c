"""CIFAR-10 adversarial distillation with a discriminator pool at NitroFusion's settings, for GPUs: the EDM teacher
of configs/cifar10_teacher.py -> 50k teacher pairs (18-step Heun) -> a student at four noise levels (80, 10, 2, 0.5;
backward simulation) against 320 heads (4 noise groups x 10 heads x 4 teacher layers x global and local; add the
kinds global_cond, local_cond for a class-conditional teacher), 1% re-initialised per step, non-saturating loss, pure
adversarial (spec adversarial_multistudent.md sections 5.2-5.3; the paper's settings are for SDXL, so these are
reconstructions to tune).

  distill train --config configs/cifar10_nitro.py --workdir runs/c10_nitro --config.teacher.workdir=runs/c10 \\
      --config.mesh.data=-1

Not run on this project's CPU machines.
"""

from configs import cifar10_teacher, common

LEVELS = (80.0, 10.0, 2.0, 0.5)


def get_config():
  teacher = cifar10_teacher.get_config()
  c = cifar10_teacher.get_config()
  pool = common.pool_section(("level1", "level2", "level3", "mid"), kinds=("global", "local"), groups=4,
                             heads_per_slot=10, sample_per_slot=1, hidden=64, learning_rate=1e-4, b1=0.0, b2=0.99)
  c.objective = common.adversarial_objective(pool, levels=LEVELS, level_probs=(0.7, 0.1, 0.1, 0.1))
  c.optim.update(learning_rate=2e-5, b1=0.0, warmup_steps=500, schedule="constant")
  c.ema.update(decay=0.9999, warmup=True)
  c.train.update(num_steps=100_000, eval_every=5000, ckpt_every=5000)
  common.schedule_sampler(c, LEVELS)
  stages = {
      "teacher": common.train_stage(teacher),
      "pairs": common.pairs_stage("teacher", num=50_000, seed=1),
      "distill": common.train_stage(c, data_stage="pairs", teacher_stage="teacher"),
  }
  pipeline = common.pipeline(stages, "tfds:cifar10")
  pipeline.objective = pipeline.stages.distill.config.objective
  return pipeline

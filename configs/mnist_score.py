"""Shared builder of the MNIST score-distillation pipelines (configs/mnist_sid.py, mnist_uni_instruct.py): the U-Net
flow-matching teacher of configs/mnist_teacher.py, then a one-step generator distilled from it with a method preset
of configs/common.py. Generator, fake score and discriminator copy the teacher's 0.64M-parameter U-Net, so a
generator step costs about three teacher forward-backward passes; budgets are sized for about an hour on 2 cores."""

import ml_collections

from configs import common, mnist_teacher


def student(method: str, num_steps: int, learning_rate: float, **objective) -> ml_collections.ConfigDict:
  c = mnist_teacher.get_config()
  c.objective = common.score_distillation_objective(method, **objective)
  c.data.batch_size = 32
  c.optim.update(learning_rate=learning_rate, b1=0.0, warmup_steps=0, schedule="constant", decay_steps=0,
                 clip_norm=0.0)
  c.ema.update(decay=0.99, warmup=True)
  c.train.update(num_steps=num_steps, log_every=50, eval_every=num_steps, ckpt_every=100)
  common.one_step_sampler(c)
  return c


def pipeline(distill_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """teacher -> distill; the top-level `objective` is the distillation stage's objective section itself."""
  stages = {"teacher": common.train_stage(mnist_teacher.get_config()),
            "distill": common.train_stage(distill_config, teacher_stage="teacher")}
  c = common.pipeline(stages, "tfds:mnist")
  c.objective = c.stages.distill.config.objective
  return c

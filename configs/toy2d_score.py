"""Shared builder of the 2-D score-distillation pipelines (configs/toy2d_uni_instruct.py, toy2d_sid.py,
toy2d_dmd2.py): the flow-matching teacher of configs/toy2d_teacher.py, then a one-step generator distilled from it
with a method preset of configs/common.py. Generator, fake score and discriminator copy the teacher's MLP."""

import ml_collections

from configs import common, toy2d_teacher


def student(method: str, num_steps: int, learning_rate: float, **objective) -> ml_collections.ConfigDict:
  c = toy2d_teacher.get_config()
  c.objective = common.score_distillation_objective(method, **objective)
  # SiD / Uni-Instruct use Adam with beta1 = 0 for both networks; no schedule.
  c.optim.update(learning_rate=learning_rate, b1=0.0, warmup_steps=0, schedule="constant", decay_steps=0,
                 clip_norm=0.0)
  c.ema.update(decay=0.99, warmup=True)
  c.train.update(num_steps=num_steps, log_every=500, eval_every=num_steps, ckpt_every=1000)
  common.one_step_sampler(c)
  return c


def pipeline(distill_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """teacher -> distill; the top-level `objective` is the distillation stage's objective section itself (one
  object), so `--config.objective.divergence=fkl` configures the distillation."""
  stages = {"teacher": common.train_stage(toy2d_teacher.get_config()),
            "distill": common.train_stage(distill_config, teacher_stage="teacher")}
  c = common.pipeline(stages, "toy:moons")
  c.objective = c.stages.distill.config.objective
  return c

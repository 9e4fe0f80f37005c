"""Shared builder of the MNIST score-distillation pipelines (configs/mnist_sid.py, mnist_uni_instruct.py): the U-Net
flow-matching teacher of configs/mnist_teacher.py, then a one-step generator distilled from it with a method preset
of configs/common.py. Generator, fake score and discriminator copy the teacher's 0.64M-parameter U-Net, so a
generator step costs about three teacher forward-backward passes; budgets are sized for about an hour on 2 cores."""

import ml_collections

from configs import common, mnist_teacher


def student(method: str, num_steps: int, learning_rate: float, **objective) -> ml_collections.ConfigDict:
  c = common.score_distillation_stage(mnist_teacher.get_config(), method, num_steps, learning_rate, **objective)
  c.data.batch_size = 32
  c.train.update(log_every=50, ckpt_every=100)
  return c


def pipeline(distill_config: ml_collections.ConfigDict,
             init: tuple[str, ml_collections.ConfigDict] | None = None) -> ml_collections.ConfigDict:
  return common.score_distillation_pipeline(mnist_teacher.get_config(), distill_config, "tfds:mnist", init=init)

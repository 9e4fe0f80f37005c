"""MNIST SlimFlow pipeline: U-Net teacher -> 10k teacher pairs -> annealing reflow of a student about half the
teacher's size from scratch -> flow-guided distillation of that student into one step (guided by its own 2-RF).

  distill train --config configs/mnist_slimflow.py --workdir runs/mnist_slimflow \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]

The student has channels (12, 24, 48): 0.36M parameters, 56% of the teacher's 0.64M. Annealing: beta falls linearly
from 1 (independent coupling on teacher samples) to 0 (pure reflow) over the first 60% of training.

Results: scripts/benchmark_reflow_mnist.py scores it against the teacher and appends each run to docs/results/reflow.md.
"""

import ml_collections

from configs import common, mnist_teacher

STUDENT_CHANNELS = (12, 24, 48)


def small_student(num_steps: int, sampler_steps: int) -> ml_collections.ConfigDict:
  c = mnist_teacher.get_config()
  c.model.channels = STUDENT_CHANNELS
  c.optim.update(learning_rate=1e-3, warmup_steps=100, schedule="cosine", decay_steps=num_steps)
  c.train.update(num_steps=num_steps, eval_every=num_steps, ckpt_every=250)
  c.sampler.steps = sampler_steps
  return c


def get_config():
  anneal = small_student(2000, 20)
  anneal.objective = common.reflow_objective(beta_schedule="linear", beta_steps=1200, init="random")
  guided = small_student(1500, 1)
  guided.optim.update(learning_rate=2e-4, schedule="constant")
  guided.objective = common.flow_guided_objective()
  stages = {
      "teacher": common.train_stage(mnist_teacher.get_config()),
      "pairs": common.pairs_stage("teacher", num=10_000, seed=1, steps=20, shard_size=1000),
      "anneal": common.train_stage(anneal, data_stage="pairs"),
      "guided": common.train_stage(guided, data_stage="pairs", teacher_stage="anneal"),
  }
  return common.pipeline(stages, "tfds:mnist")

"""MNIST reflow pipeline: U-Net flow-matching teacher -> 10k teacher pairs -> 2-rectified flow -> 10k 2-RF pairs ->
one-step distillation (t = eps) -> `refine`: that one-step student trained further on the teacher's own pairs. The
exported model (the refined student) samples in one Euler step. The last stage exists because the one-step student
cannot beat the pairs it learns from, and the 2-RF's 8-step pairs are far worse than the teacher's 20-step pairs.

  distill train --config configs/mnist_reflow.py --workdir runs/mnist_reflow \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]

CPU budget on 2 cores with a finished teacher (about 230 U-Net evaluations/s): pairs 10k x 20 Euler steps ~15 min,
2-RF 1500 steps ~25 min, 2-RF pairs 10k x 8 steps ~6 min, distillation 1500 steps ~25 min, refine 5000 steps
~90 min; every stage resumes.

Headline: the refined one-step student scores classifier FID 203.3 (2000 samples), the teacher 104.4 at 50 steps
(docs/results/reflow.md, section reflow_mnist, 2026-11-28, commit b43d6e3).
"""

import ml_collections

from configs import common, mnist_teacher


def student(num_steps: int, sampler_steps: int, **objective) -> ml_collections.ConfigDict:
  c = mnist_teacher.get_config()
  c.objective = common.reflow_objective(**objective)
  c.optim.update(learning_rate=2e-4, warmup_steps=100, schedule="constant", decay_steps=0)
  c.train.update(num_steps=num_steps, eval_every=num_steps, ckpt_every=250)
  c.sampler.steps = sampler_steps
  return c


def get_config():
  stages = {
      "teacher": common.train_stage(mnist_teacher.get_config()),
      "pairs": common.pairs_stage("teacher", num=10_000, seed=1, steps=20, shard_size=1000),
      "reflow": common.train_stage(student(1500, 20), data_stage="pairs", teacher_stage="teacher"),
      "pairs_2rf": common.pairs_stage("reflow", num=10_000, seed=2, steps=8, shard_size=1000),
      "distill": common.train_stage(student(1500, 1, time="t0"), data_stage="pairs_2rf", teacher_stage="reflow"),
      "refine": common.train_stage(student(5000, 1, time="t0"), data_stage="pairs", teacher_stage="teacher",
                                   init_stage="distill"),
  }
  return common.pipeline(stages, "tfds:mnist")

"""2-D reflow pipeline in one command: flow-matching teacher -> 50k teacher pairs -> 2-rectified flow -> 50k 2-RF
pairs -> one-step distillation (t = eps). The exported model samples in one Euler step.

  distill train --config configs/toy2d_reflow.py --workdir runs/reflow2d --config.data.source=npz:P.npz
  distill train ... --config.teacher.workdir=runs/teacher2d      # reuse a finished teacher
  distill export --workdir runs/reflow2d --out runs/reflow2d/student

Stages run in WORKDIR/<stage>; WORKDIR/pipeline.json records teacher checksums, solvers, NFE and seeds. A few minutes
on 2 CPU cores.

Results: scripts/benchmark_reflow_2d.py runs it on three toys and appends each run to docs/results/reflow.md.
"""

from configs import common, toy2d_teacher


def student(num_steps: int, sampler_steps: int, **objective):
  c = toy2d_teacher.get_config()
  c.objective = common.reflow_objective(**objective)
  c.optim.update(learning_rate=5e-4, warmup_steps=100, schedule="cosine", decay_steps=num_steps)
  c.train.update(num_steps=num_steps, eval_every=num_steps, ckpt_every=1000)
  c.sampler.steps = sampler_steps
  return c


def get_config():
  stages = {
      "teacher": common.train_stage(toy2d_teacher.get_config()),
      "pairs": common.pairs_stage("teacher", num=50_000, seed=1),
      "reflow": common.train_stage(student(3000, 100), data_stage="pairs", teacher_stage="teacher"),
      "pairs_2rf": common.pairs_stage("reflow", num=50_000, seed=2),
      "distill": common.train_stage(student(3000, 1, time="t0"), data_stage="pairs_2rf", teacher_stage="reflow"),
  }
  return common.pipeline(stages, "toy:checkerboard")

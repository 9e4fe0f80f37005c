"""2-D multi-student distillation (MSD) in one command: class-conditional flow-matching teacher -> 50k teacher pairs
-> K one-step students (reflow one-step distillation, each from the teacher's weights), student k trained only on
the pairs of its block of classes and routed to by class at sampling time.

  distill train --config configs/toy2d_msd.py --workdir W --config.data.source=npz:P.npz [--config.multi_student.k=K]
  distill export --workdir W --out B
  distill sample --sampler B --num 4000 --labels 3 --out S.npz

P.npz: 'points' float32 (N, 2) and 'labels' int (N,), each class one mode; the default data is toyset:8gaussians
(8 modes labelled 0..7). K (default 4) must divide the classes. Matched compute: the batch (512) is split between
the students, so every K trains on the same images for the same steps. Headline (scripts/benchmark_msd_2d.py,
docs/results/multi_student.md, 2026-12-07): at width 256 K = 1, 2, 4 all match the 100-step teacher; at width 16
K = 4's per-class energy is 1% below K = 1's (3 training seeds, same sample sets; within sample-set noise).
"""

from configs import common, toy2d_teacher


def teacher():
  c = toy2d_teacher.get_config()
  c.model.conditional = True
  return c


def student(num_steps: int = 3000, k: int = 4):
  c = teacher()
  c.objective = common.reflow_objective(time="t0")
  c.optim.update(learning_rate=5e-4, warmup_steps=100, schedule="cosine", decay_steps=num_steps)
  c.train.update(num_steps=num_steps, eval_every=num_steps, ckpt_every=1000)
  c.sampler.steps = 1
  c.multi_student = common.multi_student_section(k)
  return c


def get_config():
  stages = {
      "teacher": common.train_stage(teacher()),
      "pairs": common.pairs_stage("teacher", num=50_000, seed=1),
      "distill": common.train_stage(student(), data_stage="pairs", teacher_stage="teacher"),
  }
  return common.multi_student_pipeline(stages, "toyset:8gaussians")

"""MNIST multi-student distillation (MSD) in one command: class-conditional U-Net teacher -> K one-step students
(default 5: classes in consecutive blocks of two), each trained only on its classes, wrapping SiD (default; each
student with its own fake score) or reflow one-step distillation from 10k teacher pairs (`:reflow`).

  distill train --config configs/mnist_msd.py --workdir runs/mnist_msd \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.multi_student.k=2] [--config.teacher.workdir=T]
  distill train --config configs/mnist_msd.py:reflow --workdir runs/mnist_msd_reflow --config.data.source=...
  distill sample --sampler runs/mnist_msd/export --num 64 --labels 7 --out S.npz

Matched compute: the 40-row batch is split between the students (K students see one student's images for the same
steps); --config.multi_student.shared="('fake',)" shares one conditional fake score (spec 8.3 (ii)). Headline (SiD,
classifier FID, 3 sets of 2000, docs/results/multi_student.md): K = 1 54.07 +- 3.20, K = 2 51.50 +- 2.90, K = 5
74.22 +- 4.01 (shared fake score 128.85 +- 3.50); the teacher at 50 Euler steps 37.47 +- 0.83.
"""

from configs import common, mnist_score, mnist_teacher


def teacher():
  c = mnist_teacher.get_config()
  c.model.conditional = True
  return c


def student(objective: str = "sid", k: int = 5):
  if objective == "sid":
    c = mnist_score.student("sid", 1000, 5e-5)
  elif objective == "reflow":
    c = mnist_teacher.get_config()
    c.objective = common.reflow_objective(time="t0")
    c.optim.update(learning_rate=1e-4, warmup_steps=100, schedule="cosine", decay_steps=2000)
    c.train.update(num_steps=2000, log_every=100, eval_every=2000, ckpt_every=250)
    c.sampler.steps = 1
  else:
    raise ValueError(f"configs/mnist_msd.py:<objective> takes sid or reflow, got {objective!r}")
  c.model.conditional = True
  c.data.batch_size = 40
  c.multi_student = common.multi_student_section(k, layout="unroll")  # the fastest on CPU
  return c


def get_config(objective: str = "sid"):
  stages = {"teacher": common.train_stage(teacher())}
  if objective == "reflow":
    stages["pairs"] = common.pairs_stage("teacher", num=10_000, seed=1, steps=20)
  stages["distill"] = common.train_stage(student(objective), data_stage="pairs" if objective == "reflow" else "",
                                         teacher_stage="teacher")
  return common.multi_student_pipeline(stages, "tfds:mnist")

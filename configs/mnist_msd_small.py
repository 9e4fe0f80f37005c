"""MNIST multi-student distillation with students 4x smaller than the teacher, through MSD's teacher score matching
(TSM): class-conditional U-Net teacher (16-32-64 channels, 0.6M parameters) -> 10k teacher pairs -> TSM: 5 students
of 8-16-32 channels regress the teacher on their classes' digits -> one-step reflow distillation of each from its
TSM weights on the full pair set's partition.

  distill train --config configs/mnist_msd_small.py --workdir runs/mnist_msd_small \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=T]
"""

from configs import common, mnist_msd, mnist_teacher

SMALL_CHANNELS = (8, 16, 32)


def tsm(k: int = 5):
  c = mnist_teacher.get_config()
  c.model.update(conditional=True, channels=SMALL_CHANNELS)
  c.objective = common.teacher_score_matching_objective()
  c.data.batch_size = 40
  c.multi_student = common.multi_student_section(k, layout="unroll")  # the fastest on CPU
  return c


def get_config():
  distill = mnist_msd.student("reflow")
  distill.model.channels = SMALL_CHANNELS
  stages = {
      "teacher": common.train_stage(mnist_msd.teacher()),
      "pairs": common.pairs_stage("teacher", num=10_000, seed=1, steps=20),
      "tsm": common.train_stage(tsm(), teacher_stage="teacher"),
      "distill": common.train_stage(distill, data_stage="pairs", teacher_stage="teacher", init_stage="tsm"),
  }
  c = common.multi_student_pipeline(stages, "tfds:mnist")
  c.stages.tsm.config.multi_student = c.multi_student  # one K for both stages
  return c

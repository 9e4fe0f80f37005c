"""CIFAR-10 multi-student distillation at the paper's settings, for GPUs: the class-conditional EDM teacher of
configs/cifar10_teacher.py -> K = 5 one-step students (consecutive blocks of two classes), each a SiD generator with
its own fake score at configs/cifar10_sid.py's settings, the per-student batch 256 / K.

  distill train --config configs/cifar10_msd.py --workdir W --config.teacher.workdir=T \\
      [--config.mesh.student=5 --config.mesh.data=-1]

MSD (Song et al., ICML'25) reports ImageNet-64 one-step FID 1.20 with 4 students against DMD2's 1.28, and 2.37 against
2.62 without the GAN stage (spec shared/specs/adversarial_multistudent.md section 6.3); no CIFAR-10 figure.
"""

from configs import cifar10_sid, cifar10_teacher, common


def get_config():
  distill = cifar10_sid.distill_config("sid")
  distill.model.conditional = True
  distill.data.batch_size = 250  # divisible by K = 5 and by common device counts
  distill.multi_student = common.multi_student_section(5)
  teacher = cifar10_teacher.get_config()
  teacher.model.conditional = True
  stages = {"teacher": common.train_stage(teacher),
            "distill": common.train_stage(distill, teacher_stage="teacher")}
  return common.multi_student_pipeline(stages, "tfds:cifar10")

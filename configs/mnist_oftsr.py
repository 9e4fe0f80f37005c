"""MNIST 14x14 -> 28x28 super-resolution with OFTSR: a noise-augmented conditional flow teacher (2x2 average pooling,
bicubic lift, sigma_p = 0.2; the MNIST teacher's U-Net with the lifted input as a second channel), then its one-step
student with the fidelity-realism knob t.

  distill train --config configs/mnist_oftsr.py --workdir W --config.data.source=npz:../shared/data/mnist10k.npz
  distill restore --sampler W/distill/export --data npz:../shared/data/mnist10k.npz --knob 0.99

Budget: teacher 1000 x 64 images, student 400 x 64 (a student step costs about four teacher steps; about 40 minutes
on 2 CPU cores). Reference (spec §5): the paper's x4 SR numbers on FFHQ-256, DIV2K, ImageNet-256. Headline
(docs/results/trajectory.md, oftsr, 2026-12-07 19:10; 3 x 2000 digits): PSNR 29.12 dB at knob 0.01 (the teacher's
one step: 29.12) to 27.43 at 0.99 (its 50 steps: 27.70), one evaluation instead of 50.
"""

from configs import common, mnist_teacher


def teacher_config():
  c = common.restoration_teacher(mnist_teacher.get_config(), "avgpool:2", sigma_y=0.0, sigma_p=0.2, steps=50)
  c.train.update(num_steps=1000, ckpt_every=250)
  c.optim.decay_steps = 1000
  return c


def get_config():
  teacher = teacher_config()
  student = common.oftsr_stage(teacher_config(), num_steps=400, learning_rate=1e-4)
  stages = {"teacher": common.train_stage(teacher),
            "distill": common.train_stage(student, teacher_stage="teacher")}
  c = common.pipeline(stages, "tfds:mnist")
  c.objective = c.stages.distill.config.objective
  return c

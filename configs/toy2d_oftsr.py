"""2-D OFTSR in one command: a noise-augmented conditional flow teacher that restores points from their coarse
version (quantize:0.5, each coordinate replaced by the centre of its 0.5-cell; source noise sigma_p = 0.2), then its
one-step student with the fidelity-realism knob t (distill/objectives/restoration.py).

  distill train --config configs/toy2d_oftsr.py --workdir W --config.data.source=npz:P.npz
  distill restore --sampler W/distill/export --data npz:P.npz --knob 0.99      # the student; --knob 0.01 for fidelity
  distill restore --sampler W/teacher/export --data npz:P.npz --steps 50

Reference (spec §5; arXiv 2412.09465): one-step x4 SR at the teacher's quality, the knob trading PSNR for realism.
Headline (docs/results/trajectory.md, oftsr, 2026-12-07, 2000 points x 3 sets): on moons the student at knob 0.01
matches the teacher's one step (PSNR 36.62 vs 36.63 dB) and at 0.99 its 50 steps (34.14 dB, energy 1.57e-3 vs
34.22 dB, 1.56e-3; data floor 1.63e-3); 8gaussians alike (32.78 vs 32.89 dB at the realism end).
"""

from configs import common, toy2d_teacher


def get_config():
  teacher = common.restoration_teacher(toy2d_teacher.get_config(), "quantize:0.5", sigma_y=0.0, sigma_p=0.2,
                                       steps=50)
  student = common.oftsr_stage(common.restoration_teacher(toy2d_teacher.get_config(), "quantize:0.5", 0.0, 0.2, 50),
                               num_steps=2000, learning_rate=2e-4)
  stages = {"teacher": common.train_stage(teacher),
            "distill": common.train_stage(student, teacher_stage="teacher")}
  c = common.pipeline(stages, "toy:moons")
  c.objective = c.stages.distill.config.objective
  return c

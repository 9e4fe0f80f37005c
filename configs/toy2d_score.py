"""Shared builder of the 2-D score-distillation pipelines (configs/toy2d_uni_instruct.py, toy2d_sid.py,
toy2d_sida.py, toy2d_dmd2.py): the flow-matching teacher of configs/toy2d_teacher.py, then a one-step generator
distilled from it with a method preset of configs/common.py. Generator, fake score and discriminator copy the
teacher's MLP.

The generator's energy distance to 65536 held-out data points (the exact projection formula) is measured every 250
steps and the best checkpoint is the exported student: one-step generators oscillate by several times the teacher's
distance from one evaluation to the next, as image students do in FID, where the best-FID checkpoint is kept. At 4000
points the selection was noise-dominated (docs/results/score_distillation.md, section score_2d, 2026-11-29, commit
b0bf642)."""

import ml_collections

from configs import common, toy2d_teacher


def student(method: str, num_steps: int, learning_rate: float, **objective) -> ml_collections.ConfigDict:
  c = common.score_distillation_stage(toy2d_teacher.get_config(), method, num_steps, learning_rate, **objective)
  c.train.update(log_every=500, ckpt_every=1000)
  c.eval.update(fid_every=250, fid_features="energy", fid_num=65536)
  return c


def pipeline(distill_config: ml_collections.ConfigDict, pairs: ml_collections.ConfigDict | None = None
             ) -> ml_collections.ConfigDict:
  return common.score_distillation_pipeline(toy2d_teacher.get_config(), distill_config, "toy:moons", export="best",
                                            pairs=pairs)

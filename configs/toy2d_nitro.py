"""2-D adversarial distillation with a discriminator pool (NitroFusion) in one command: flow-matching teacher ->
50k teacher pairs -> one-step student (initialised from the teacher) trained against a pool of small heads on the
frozen teacher's MLP features, the teacher's samples as the real set (distill/pool.py, objectives/adversarial.py).

  distill train --config configs/toy2d_nitro.py --workdir W --config.data.source=npz:P.npz [--config.teacher.workdir=T]
  distill export --workdir W --out B
  distill sample --sampler B --num 4000 --steps 1 --out S.npz
  distill train --config configs/toy2d_nitro.py:finetune --workdir W ...   # reflow student, then pool + L2 fine-tune

Pool: 4 noise groups x 4 heads per group on each of the teacher's blocks 0-2 (48 heads), one head per group drawn and
trained per step, 1% re-initialised per step. Headline (docs/results/adversarial.md, pool_2d, 2026-12-06/07): energy
2.55x / 13.56x / 4.06x the reflow one-step student's on moons / 8gaussians / checkerboard; with the L2 term
(--config.objective.regression_weight=1 --config.objective.pool.weight_mode=grad_match
--config.objective.pool.weight=0.3) 0.96x / 1.16x / 1.41x.
"""

from configs import common, toy2d_reflow, toy2d_teacher

LEVELS = (999.0,)  # the uniform-t grid's first level, (1 - t_eps) / t_eps: one step from pure noise


def student(num_steps: int = 3000, **pool):
  c = toy2d_teacher.get_config()
  c.objective = common.adversarial_objective(
      common.pool_section(("block0", "block1", "block2"), learning_rate=2e-4, **pool), levels=LEVELS)
  c.optim.update(learning_rate=1e-4, b1=0.0, warmup_steps=100, schedule="cosine", decay_steps=num_steps)
  c.ema.update(decay=0.999, warmup=True)
  c.train.update(num_steps=num_steps, eval_every=num_steps, ckpt_every=1000)
  common.schedule_sampler(c, LEVELS)
  return c


def finetune_stage(num_steps: int = 1000):
  """The pool + L2 student of the ':finetune' variant: regression weight 1, the pool's term at 0.3 x the
  regression's gradient norm, started from an exported one-step student."""
  c = student(num_steps, weight_mode="grad_match", weight=0.3)
  c.objective.regression_weight = 1.0
  c.optim.learning_rate = 5e-5
  return c


def get_config(variant: str = ""):
  """'' : pure pool from teacher pairs. 'finetune': configs/toy2d_reflow.py's pipeline, then its one-step student
  fine-tuned by pool + L2 on the 2-RF pairs it was distilled from (same noise-sample coupling), the pool judging
  against the 2-RF's 100-step samples on the teacher's features (LADD / NitroFusion start from a distilled student)."""
  if variant == "finetune":
    c = toy2d_reflow.get_config()
    c.stages.pool = common.train_stage(finetune_stage(), data_stage="pairs_2rf", teacher_stage="teacher",
                                       init_stage="distill")
    c.pipeline.stages = (*c.pipeline.stages, "pool")
    c.objective = c.stages.pool.config.objective
    return c
  if variant:
    raise ValueError(f"configs/toy2d_nitro.py:<variant> takes '' or finetune, got {variant!r}")
  stages = {
      "teacher": common.train_stage(toy2d_teacher.get_config()),
      "pairs": common.pairs_stage("teacher", num=50_000, seed=1),
      "distill": common.train_stage(student(), data_stage="pairs", teacher_stage="teacher"),
  }
  c = common.pipeline(stages, "toy:checkerboard")
  c.objective = c.stages.distill.config.objective
  return c

"""MNIST Uni-Instruct in one command: U-Net teacher -> SiD generator (the 1000 steps of configs/mnist_sid.py, stage
`sid`) -> Uni-Instruct from that generator (stage `distill`), minimising an expanded f-divergence (objective.divergence:
rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys) with a discriminator's density ratio. As in Uni-Instruct's
runs (spec divergence_family.md, "L.T."), the generator is held for the first 100 steps while the teacher-initialised
fake score and discriminator learn its distribution, follows SiD (alpha = 1) until step 200, then the divergence.

  distill train --config configs/mnist_uni_instruct.py --workdir runs/mnist_ui \\
      --config.data.source=npz:../shared/data/mnist10k.npz --config.objective.divergence=fkl \\
      [--config.teacher.workdir=runs/mnist]
The measured runs kept each stage's best checkpoint (distill train-classifier first), <s> sid (N=100), distill (N=50):
  --config.stages.<s>.export=best --config.stages.<s>.config.eval.fid_every=N \\
  --config.stages.<s>.config.eval.fid_features=classifier:runs/mnist_classifier

Headline: classifier FID 140.73 (jeffreys) and 158.29 (fkl), 1.39x and 1.56x the 100-step teacher, from the SiD
generator's 135.19 (docs/results/score_distillation.md, section score_mnist, 2026-12-02, commit 8ffb1ff).
"""

from configs import mnist_score


def get_config():
  sid = mnist_score.student("sid", 1000, 5e-5)
  uni_instruct = mnist_score.student("uni_instruct", 400, 5e-5, divergence="jeffreys", generator_start=100,
                                     divergence_start=200, gan_weight=0.0)
  return mnist_score.pipeline(uni_instruct, init=("sid", sid))

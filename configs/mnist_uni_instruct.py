"""MNIST Uni-Instruct in one command: U-Net teacher -> SiD generator (the 1000 steps of configs/mnist_sid.py, stage
`sid`) -> Uni-Instruct from that generator (stage `distill`), minimising an expanded f-divergence (objective.divergence:
rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys) with a discriminator's density ratio. Uni-Instruct's runs
start from SiD generators the same way (spec divergence_family.md, "L.T."); its fake score and discriminator start from
the teacher, so the generator is held for the first 100 steps while they learn its distribution, then follows SiD
(alpha = 1) until step 200 while the discriminator warms up, then the divergence.

  distill train --config configs/mnist_uni_instruct.py --workdir runs/mnist_ui \\
      --config.data.source=npz:../shared/data/mnist10k.npz --config.objective.divergence=fkl \\
      [--config.teacher.workdir=runs/mnist]
"""

from configs import mnist_score


def get_config():
  sid = mnist_score.student("sid", 1000, 5e-5)
  uni_instruct = mnist_score.student("uni_instruct", 400, 5e-5, divergence="jeffreys", generator_start=100,
                                     divergence_start=200, gan_weight=0.0)
  return mnist_score.pipeline(uni_instruct, init=("sid", sid))

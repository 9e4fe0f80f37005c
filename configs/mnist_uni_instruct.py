"""MNIST Uni-Instruct in one command: U-Net teacher -> SiD generator (the 1000 steps of configs/mnist_sid.py, stage
`sid`) -> Uni-Instruct from that generator (stage `distill`), minimising an expanded f-divergence (objective.divergence:
rkl, fkl, jeffreys, js, chi2, hellinger; default jeffreys) with a discriminator's density ratio. Uni-Instruct's runs
start from SiD generators the same way (spec divergence_family.md, "L.T."); its fake score and discriminator start from
the teacher, so the generator is held for the first 100 steps while they learn its distribution, then follows SiD
(alpha = 1) until step 200 while the discriminator warms up, then the divergence.
Measured on 2 CPU cores (jax 0.10.2; scripts/benchmark_score_mnist.py, 2000 samples, classifier FID; teacher of
configs/mnist_teacher.py at 100 Euler steps: 101.20, at 50: 108.07, Heun 50 steps 97.38, RK45 94.89; both stages
keep their best in-training checkpoint, flags below): from the SiD generator's 135.19, jeffreys ends at 140.73 (1.39x
the 100-step teacher) and fkl at 158.29 (1.56x), both at step 400 (fkl: 13 min after the SiD stage). The SiD-alpha-1
warm-up with a fake score restarted from the teacher first costs quality (in-training FID 152 -> 221 at step 200),
which the 200 divergence steps do not fully win back; fkl was still improving at step 400 (179, 169, 155 at steps
300-400), so a longer budget should help.

  distill train --config configs/mnist_uni_instruct.py --workdir runs/mnist_ui \\
      --config.data.source=npz:../shared/data/mnist10k.npz --config.objective.divergence=fkl \\
      [--config.teacher.workdir=runs/mnist]
The measured runs kept each stage's best checkpoint by in-training FID (distill train-classifier first), for <s> in
sid (fid_every=100) and distill (fid_every=50):
  --config.stages.<s>.export=best --config.stages.<s>.config.eval.fid_every=N \\
  --config.stages.<s>.config.eval.fid_features=classifier:runs/mnist_classifier
"""

from configs import mnist_score


def get_config():
  sid = mnist_score.student("sid", 1000, 5e-5)
  uni_instruct = mnist_score.student("uni_instruct", 400, 5e-5, divergence="jeffreys", generator_start=100,
                                     divergence_start=200, gan_weight=0.0)
  return mnist_score.pipeline(uni_instruct, init=("sid", sid))

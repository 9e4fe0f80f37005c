"""MNIST Uni-Instruct in one command: U-Net teacher -> SiD generator (the 1000 steps of configs/mnist_sid.py, stage
`sid`) -> Uni-Instruct from it (stage `distill`), minimising an expanded f-divergence (objective.divergence: rkl,
fkl, jeffreys, js, chi2, hellinger; default jeffreys) with a discriminator's density ratio. As in Uni-Instruct's runs
the generator is held for 100 steps while the fake score and discriminator learn it, follows SiD (alpha = 1) until
step 200, then the divergence, its rate on a cosine to 0 (critics constant; as configs/toy2d_uni_instruct.py).

  distill train --config configs/mnist_uni_instruct.py --workdir runs/mnist_ui \\
      --config.data.source=npz:../shared/data/mnist10k.npz --config.objective.divergence=fkl \\
      [--config.teacher.workdir=runs/mnist]
  python scripts/benchmark_score_mnist.py --runs warmup=runs/mnist_ui@200,last=runs/mnist_ui --sample_seeds 3

Headline (one training seed, last step, 3 sample sets): classifier FID 180.98 +- 3.72 (jeffreys) against its SiD
warm-up's end at 196.79 +- 4.93 (docs/results/score_distillation.md, section score_mnist, 2026-12-07).
"""

from configs import mnist_score


NUM_STEPS, DIVERGENCE_START = 400, 200


def get_config():
  sid = mnist_score.student("sid", 1000, 5e-5)
  uni_instruct = mnist_score.student("uni_instruct", NUM_STEPS, 5e-5, divergence="jeffreys", generator_start=100,
                                     divergence_start=DIVERGENCE_START, gan_weight=0.0, critic_schedule="constant")
  uni_instruct.optim.update(schedule="cosine", decay_start=DIVERGENCE_START, decay_steps=NUM_STEPS)
  uni_instruct.train.keep_every = DIVERGENCE_START  # the warm-up's end stays for comparison
  return mnist_score.pipeline(uni_instruct, init=("sid", sid))

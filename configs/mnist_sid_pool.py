"""MNIST SiD plus a discriminator pool in one command: U-Net teacher -> one-step generator by SiD (alpha 1.2, as
configs/mnist_sid.py) whose single-discriminator GAN term (SiDA's) is replaced by a pool of small heads on the frozen
teacher's features trained on real digits (objective.adversarial=pool). The pool's weight matches the gradient norm
of the SiD term (averaged over the first 100 steps, then frozen).

  distill train --config configs/mnist_sid_pool.py --workdir runs/mnist_sid_pool \\
      --config.data.source=npz:../shared/data/mnist10k.npz [--config.teacher.workdir=runs/mnist]

Results: scripts/benchmark_score_mnist.py (--runs sid_pool=runs/mnist_sid_pool) appends to
docs/results/score_distillation.md, next to SiDA (configs/mnist_sida.py).
"""

from configs import common, mnist_score


def get_config():
  pool = common.pool_section(("level1", "level2", "mid"), kinds=("global", "local"), hidden=32, learning_rate=2e-4,
                             weight_mode="grad_match", weight=0.3)
  return mnist_score.pipeline(mnist_score.student("sid", 1000, 5e-5, adversarial="pool", pool=pool))

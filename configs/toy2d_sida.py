"""2-D SiDA in one command: flow-matching teacher -> one-step generator by SiD plus the adversarial term of a
discriminator trained on real data versus generator samples (SiDA, spec divergence_family.md section 6).

  distill train --config configs/toy2d_sida.py --workdir W --config.data.source=npz:P.npz \
      [--config.teacher.workdir=T]
  distill export --workdir W --out B      # samplers.load(B).sample(key, n): one network evaluation

Settings chosen on moons (4000 steps, best checkpoint; scripts/benchmark_score_2d.py): alpha stays at SiD's 1.2
(alpha 1.0 without the GAN oscillated more in training), the GAN weight is 0.1 over the normaliser (0.3 scored no
better; SiDA's own rule, 1e-4 x the pixel count in common.sida_gan_weight, would give 2e-4 here), generator noise
levels are log-normal(-1.2, 1.2) (with plain SiD, SiD's Karras range scored worse), and the discriminator is trained
and the GAN term taken at a fresh low noise level, log-normal(-3, 1) (median 0.05), where the moons' thin structure
is still visible; SiDA's own choice, the divergence term's x_sigma with the critic at log-normal(-1.2, 1.2), scored
1.02x and 1.21x the teacher on the two training seeds.
Unlike SiD, the student sees real data through the discriminator, so it is not bound to its teacher's errors; on
moons (n = 262144, evaluation seeds 0-5; 100-step teacher 0.000254) the two training seeds scored 0.84x and 1.12x
the teacher's energy distance by their exported (best-by-energy) checkpoints and 0.89x and 0.95x by their last ones,
against 1.87x for data-free SiD and 1.9-3.5x for the Uni-Instruct divergences (scripts/benchmark_score_2d.py, same
evaluation seeds, training seed 0). Selecting the best checkpoint at fid_num = 65536 is noisy at this level.
"""

from configs import toy2d_score


def get_config():
  return toy2d_score.pipeline(toy2d_score.student("sida", 4000, 1e-4, alpha=1.2, gan_weight=0.1, disc_init="random",
                                                  generator_sigma="lognormal:-1.2,1.2", disc_sigma="lognormal:-3,1",
                                                  gan_sigma="lognormal:-3,1"))

"""Uni-Instruct's divergence phase on exact Gaussian ground truth: which estimated piece breaks after the warm-up.

  python scripts/diagnose_divergence.py --out bench_out [--divergences rkl,fkl,jeffreys,js,chi2,hellinger]
      [--alphas 0.5,1.2] [--steps 3000] [--divergence_start 1000] [--seeds 0] [--every 250]

Data N((1, -0.5), diag(0.5, 0.3)^2), the exact teacher, an affine one-step generator (exactly Gaussian samples) and
learned MLP critics (fake score, discriminator), trained by the generic trainer (distill/gaussian_lab.py) with the
toy configs' Uni-Instruct options: SiD(alpha = 1) until --divergence_start, then the divergence with
divergence_alpha (0.5: the exact gradient; larger: SiD's alpha carried to every divergence). Every --every steps:
the generator's mean error (in units of the data's std) and std ratio, the fake score's error against the
generator's exact denoiser relative to the exact signal |D_phi - D*|^2, the discriminator's log-ratio RMSE, and the
cosine of the learned generator gradient to the gradient with exact critics. Writes OUT/diagnose_divergence.json
and .md and appends to docs/results/score_distillation.md.
"""

from __future__ import annotations

import argparse


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--divergences", default="rkl,fkl,jeffreys,js,chi2,hellinger")
  p.add_argument("--alphas", default="0.5,1.2", help="divergence_alpha values")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--divergence_start", type=int, default=1000)
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--seeds", default="0", help="training seeds")
  p.add_argument("--every", type=int, default=250, help="measurement interval")
  p.add_argument("--ema", type=float, default=0.0, help="generator EMA decay (the measured generator is its EMA)")
  p.add_argument("--generator_decay", action="store_true",
                 help="generator learning rate constant until --divergence_start, then a cosine to 0 at --steps "
                      "(critics constant)")
  benchmarking.add_results_flag(p, "score_distillation")
  return p.parse_args()


DECAY_NOTE = " (generator: cosine to 0 from the warm-up end)"


def lab_options(divergence: str, alpha: float, divergence_start: int) -> dict:
  """The 2-D Uni-Instruct options of configs/toy2d_uni_instruct.py as ScoreDistillation fields."""
  from configs import common
  from distill import objectives

  o = common.score_distillation_objective("uni_instruct", divergence=divergence, divergence_alpha=alpha,
                                          divergence_start=divergence_start).to_dict()
  return {k: v for k, v in o.items() if k not in objectives.SCORE_DISTILLATION_BUILDER_KEYS}


def lab_optim(learning_rate: float) -> dict:
  from configs import common

  return common.base().optim.to_dict() | dict(learning_rate=learning_rate, b1=0.0, warmup_steps=0,
                                             schedule="constant", decay_steps=0, clip_norm=0.0)


def main():
  args = parse()
  import numpy as np

  from distill import benchmarking, gaussian_lab as lab

  data = lab.GaussianData(mean=(1.0, -0.5), std=(0.5, 0.3))
  runs = []
  for divergence in args.divergences.split(","):
    for alpha in (float(a) for a in args.alphas.split(",")):
      for seed in (int(s) for s in args.seeds.split(",")):
        critic_optim = lab_optim(args.learning_rate)
        optim = critic_optim | (dict(schedule="cosine", decay_start=args.divergence_start, decay_steps=args.steps)
                                 if args.generator_decay else {})
        objective = lab.lab_objective(data, lab_options(divergence, alpha, args.divergence_start), optim,
                                      critic_optim=critic_optim)
        _, rows = lab.train(objective, data, args.steps, measure_every=args.every, seed=seed, ema=args.ema)
        runs.append({"divergence": divergence, "alpha": alpha, "seed": seed, "rows": rows})
        print(divergence, alpha, seed, rows[-1], flush=True)

  def at(rows, step):
    return min(rows, key=lambda r: abs(r["step"] - step))

  lines = [benchmarking.machine_line(benchmarking.machine_info()), "",
           f"Gaussian data N((1, -0.5), diag(0.5, 0.3)^2), exact teacher, affine generator, learned MLP critics; "
           f"lr {args.learning_rate}{DECAY_NOTE if args.generator_decay else ''}, generator EMA "
           f"{args.ema}, SiD(alpha = 1) until step {args.divergence_start}, {args.steps} steps. "
           "mean error in data stds; fake/signal = E|D_psi - D*|^2 / E|D_phi - D*|^2; cosine of the learned "
           "generator gradient to the exact-critic one (mean over the divergence phase, and its minimum).", "",
           "| divergence | divergence_alpha | seed | mean error (warm-up end -> last) | std ratio (-> last) | "
           "fake/signal (last) | ratio RMSE (last) | grad cosine mean (min) |", "|---|---|---|---|---|---|---|---|"]
  for run in runs:
    rows, warm = run["rows"], at(run["rows"], args.divergence_start)
    last = rows[-1]
    phase = [r["grad_cosine"] for r in rows if r["step"] > args.divergence_start]
    lines.append(f"| {run['divergence']} | {run['alpha']} | {run['seed']} | {warm['mean_error']:.3f} -> "
                 f"{last['mean_error']:.3f} | {warm['std_ratio']:.3f} -> {last['std_ratio']:.3f} | "
                 f"{last['fake_to_signal']:.3g} | {last['ratio_rmse']:.3g} | {np.mean(phase):.3f} ({min(phase):.3f}) |")
  benchmarking.write_report(args.out, "diagnose_divergence", {"args": vars(args), "runs": runs}, lines,
                            results=args.results)


if __name__ == "__main__":
  main()

"""Defaults shared by every config. Each experiment config starts from `base()` and overrides what it needs."""

import math

import ml_collections

from distill.pipeline_config import INHERIT_SEED

# Logical axis -> mesh axis. Mesh {data: N, fsdp: 1} is pure data parallelism (size-1 fsdp replicates);
# {data: 1, fsdp: N} shards parameters and optimizer state (ZeRO-3 style).
DEFAULT_RULES = (
    ("embed", "fsdp"), ("mlp", None), ("conv_in", None), ("conv_out", "fsdp"), ("norm", None), ("vocab", None),
)


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict(dict(source="toy:moons", batch_size=512, flip=False))

  c.model = ml_collections.ConfigDict(dict(name="mlp", width=256, depth=3, emb_dim=128, noise_scale=1.0,
                                           conditional=False, compute_dtype="float32"))
  c.parameterization = ml_collections.ConfigDict(dict(name="velocity", time_scale=999.0))
  c.objective = ml_collections.ConfigDict(dict(name="flow_matching", t_eps=1e-3, label_dropout=0.0))
  c.teacher = ml_collections.ConfigDict(dict(bundle="", workdir="", dtype="float32"))

  c.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                                           weight_decay=0.0, warmup_steps=100, schedule="constant",
                                           decay_start=0, decay_steps=0, clip_norm=1.0))
  c.ema = ml_collections.ConfigDict(dict(decay=0.999, warmup=True))

  c.train = ml_collections.ConfigDict(dict(num_steps=1000, log_every=100, eval_every=0, ckpt_every=500,
                                           keep_last=2, keep_every=0))
  # In-training FID (off when fid_every is 0): fid_num samples of the EMA model at fid_steps (0: the sampler's
  # default) in fid_features ('inception', 'classifier:<folder>') against fid_ref (a data source or a
  # `distill fid stats` file; '' = data.source). For point data fid_features='energy' uses the energy distance to
  # fid_num points of fid_ref drawn under a held-out seed. The best checkpoint by that value is kept in workdir/best.
  # eval.reference: data source that evaluations compare samples with ('' = data.source; pipelines set it to the
  # real data for stages trained on teacher pairs).
  c.eval = ml_collections.ConfigDict(dict(num_samples=2000, reference="", fid_every=0, fid_features="", fid_ref="",
                                          fid_num=1000, fid_steps=0))
  c.sampler = ml_collections.ConfigDict(dict(solver="euler", grid="uniform_t", steps=100, t_eps=1e-3,
                                             sigma_min=0.002, sigma_max=80.0, rho=7.0, guidance=1.0))

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  c.sharding = ml_collections.ConfigDict(dict(rules=DEFAULT_RULES))
  return c


def edm_sections(c: ml_collections.ConfigDict, sigma_data: float) -> None:
  """Switch a config to EDM preconditioning, the EDM loss and the EDM Heun sampler (rho = 7 grid)."""
  c.parameterization = ml_collections.ConfigDict(dict(name="edm", sigma_data=sigma_data))
  c.objective = ml_collections.ConfigDict(dict(name="edm", p_mean=-1.2, p_std=1.2, sigma_data=sigma_data,
                                               label_dropout=0.0))
  c.sampler.solver, c.sampler.grid, c.sampler.steps = "heun", "edm", 18


def reflow_objective(**overrides) -> ml_collections.ConfigDict:
  """objective section of distill/objectives/reflow.py's Reflow (defaults: 2-rectified flow from the teacher)."""
  return ml_collections.ConfigDict(dict(name="reflow", time="uniform", k=1, distance="l2", huber_c=0.00054,
                                        t_eps=1e-3, beta_schedule="none", beta_steps=1, beta_value=0.0, online=False,
                                        online_steps=20, label_dropout=0.0, lpips_weights="", lpips_resize=0,
                                        init="teacher") | overrides)


def flow_guided_objective(**overrides) -> ml_collections.ConfigDict:
  """objective section of distill/objectives/reflow.py's FlowGuidedDistillation (SlimFlow's defaults; the student
  starts from the configured teacher's parameters, i.e. the annealing-reflow student it guides)."""
  return ml_collections.ConfigDict(dict(name="flow_guided", distance="l2", huber_c=0.00054, t_eps=1e-3, t_min=0.2,
                                        t_max=0.8, guide_first_leg="student", guide_weight=1.0, lpips_weights="",
                                        lpips_resize=0, init="teacher") | overrides)


def sida_gan_weight(data_shape) -> float:
  """SiDA's weight of the per-sample GAN term relative to the SiD term, both over the normaliser: its generator loss
  is lsg * sum_pixels(SiD) / n + lsg_gan * C*H*W * BCE / n with lsg = 100, lsg_gan = 0.01 (spec divergence_family.md
  section 6 and pitfall 4), i.e. 1e-4 * C*H*W (0.31 on CIFAR-10, 0.078 on MNIST)."""
  return 1e-4 * math.prod(data_shape)


# Method presets of distill/objectives/score_distillation.py (spec shared/specs/divergence_family.md, sections 2-8):
# the settings that make each method what it is; configs add budgets, optimizers and scales.
SCORE_DISTILLATION_PRESETS = {
    # Uni-Instruct: f-divergence weights with a discriminator ratio, SiD(alpha=1) warm-up, sigma_init 2.5.
    "uni_instruct": dict(estimator="f_divergence", discriminator=True, gan_over_normaliser=True),
    # SiD: Fisher divergence through score identities, alpha = 1.2, data-free.
    "sid": dict(estimator="sid", alpha=1.2),
    # SiDA: SiD(alpha = 1) plus the adversarial term of a discriminator, weighted as on CIFAR-10 (sida_gan_weight).
    "sida": dict(estimator="sid", alpha=1.0, discriminator=True, gan_weight=sida_gan_weight((3, 32, 32)),
                 gan_over_normaliser=True),
    # SIM: score implicit matching with the pseudo-Huber distance (self-normalising, no mean-abs normaliser).
    "sim": dict(estimator="sim", sim_distance="pseudo_huber", sim_c=0.01, normaliser="none"),
    # Diff-Instruct: integral KL, detached direction, log-normal sigma, no normaliser, sigma_init 1.
    "diff_instruct": dict(estimator="vsd", divergence="rkl", normaliser="none", generator_sigma="lognormal:-1.2,1.2",
                          sigma_init=1.0),
    # DMD: the DI direction over the mean-abs normaliser on the Karras index range [20, 980], plus a regression
    # loss on teacher pairs (data.source = pairs:<store>), sigma_init 80.
    "dmd": dict(estimator="vsd", divergence="rkl", generator_sigma="karras_index:20,980",
                fake_sigma="karras_index:0,999", sigma_init=80.0, regression_weight=0.25, normaliser_eps=1e-6),
    # DMD2: DMD without regression, a GAN on noised samples, five critic steps per generator step, uniform labels.
    "dmd2": dict(estimator="vsd", divergence="rkl", generator_sigma="karras_index:20,980",
                 fake_sigma="karras_index:0,999", disc_sigma="karras_index:0,999", gan_sigma="karras_index:0,999",
                 sigma_init=80.0, discriminator=True, gan_weight=3e-3, generator_every=5, labels="uniform",
                 normaliser_eps=1e-6),
    # f-distill: the DI direction weighted by h(r) = r^2 f''(r) (batch-normalised) plus a GAN; forward KL default.
    "f_distill": dict(estimator="vsd", divergence="fkl", generator_sigma="karras_index:2,998",
                      fake_sigma="karras_index:2,998", disc_sigma="karras_index:2,998", sigma_init=80.0,
                      discriminator=True, gan_weight=1e-3, generator_every=5, normaliser_eps=1e-6),
}


def score_distillation_objective(method: str, **overrides) -> ml_collections.ConfigDict:
  """objective section of ScoreDistillation: shared defaults (SiD / Uni-Instruct lineage), then the method's
  preset, then overrides."""
  defaults = dict(
      name="score_distillation", estimator="f_divergence", divergence="rkl", alpha=1.2, divergence_alpha=0.5,
      sim_distance="l2",
      sim_c=0.0, sigma_init=2.5, sigma_data=0.5, generator_sigma="karras:0.8", fake_sigma="lognormal:-1.2,1.2",
      disc_sigma="lognormal:-1.2,1.2", gan_sigma="", normaliser="mean_abs", normaliser_eps=1e-5,
      ratio_path="pathwise", ratio_logit_clip=10.0, ratio_min=0.1, ratio_max=20.0, weight_normalise=True,
      gan_weight=0.0, gan_over_normaliser=False, regression_weight=0.0, regression_distance="l2", lpips_weights="",
      lpips_resize=0, generator_start=0, divergence_start=0, labels="data", guidance=1.0, discriminator=False,
      disc_init="teacher", generator_init="teacher", generator_every=1, fake_learning_rate=0.0, disc_learning_rate=0.0,
      critic_schedule="")
  return ml_collections.ConfigDict(defaults | SCORE_DISTILLATION_PRESETS[method] | overrides)


def one_step_sampler(c: ml_collections.ConfigDict) -> None:
  """Export a score-distilled generator as the one-step student sampler: x0 = D(sigma_init z; sigma_init)."""
  c.sampler.update(solver="student", grid="edm", steps=1, sigma_max=c.objective.sigma_init)


def score_distillation_stage(c: ml_collections.ConfigDict, method: str, num_steps: int, learning_rate: float,
                             **objective) -> ml_collections.ConfigDict:
  """Turn a teacher's config `c` into a CPU-budget score-distillation stage of `method`: Adam with beta1 = 0 and no
  schedule (SiD / Uni-Instruct), EMA 0.99, one evaluation at the end, exported as the one-step sampler."""
  c.objective = score_distillation_objective(method, **objective)
  c.optim.update(learning_rate=learning_rate, b1=0.0, warmup_steps=0, schedule="constant", decay_steps=0,
                 clip_norm=0.0)
  c.ema.update(decay=0.99, warmup=True)
  c.train.update(num_steps=num_steps, eval_every=num_steps)
  one_step_sampler(c)
  return c


def score_distillation_pipeline(teacher: ml_collections.ConfigDict, distill: ml_collections.ConfigDict,
                                data_source: str, export: str = "last",
                                init: tuple[str, ml_collections.ConfigDict] | None = None,
                                pairs: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """teacher -> [init stage ->] [pairs ->] distill (exporting its `export` checkpoint, 'last' or 'best'). `init` =
  (name, config): a one-step stage distilled from the teacher first, whose exported generator initialises the
  distill stage's (Uni-Instruct starts from a SiD generator). `pairs`: a pairs_stage of the teacher that the distill
  stage trains on (its regression term's (noise, x) and its discriminator's real set). The top-level `objective` is
  the distill stage's objective section itself (one object), so `--config.objective.divergence=fkl` configures
  that stage."""
  stages = {"teacher": train_stage(teacher)}
  init_name = ""
  if init is not None:
    init_name, init_config = init
    stages[init_name] = train_stage(init_config, teacher_stage="teacher")
  if pairs is not None:
    stages["pairs"] = pairs
  stages["distill"] = train_stage(distill, data_stage="pairs" if pairs is not None else "", teacher_stage="teacher",
                                  init_stage=init_name, export=export)
  c = pipeline(stages, data_source)
  c.objective = c.stages.distill.config.objective
  return c


def pairs_stage(source_stage: str, num: int, seed: int, steps: int = 0, shard_size: int = 10_000,
                sampler=None) -> ml_collections.ConfigDict:
  """A pipeline stage that makes `num` pairs with `source_stage`'s model (steps 0 / sampler None: its own)."""
  return ml_collections.ConfigDict(dict(kind="pairs", source_stage=source_stage, num=num, seed=seed, steps=steps,
                                        shard_size=shard_size, sampler=sampler or {}))


def train_stage(config, data_stage: str = "", teacher_stage: str = "", init_stage: str = "",
                export: str = "last") -> ml_collections.ConfigDict:
  """A pipeline stage that trains `config` (on `data_stage`'s pairs, with `teacher_stage`'s model as teacher, its
  student initialised from `init_stage`'s exported model); `export` 'last' or 'best' (by in-training evaluation).
  The stage's seed becomes INHERIT_SEED (the pipeline's seed) until a stage override sets its own."""
  config.seed = INHERIT_SEED
  return ml_collections.ConfigDict(dict(kind="train", config=config, data_stage=data_stage,
                                        teacher_stage=teacher_stage, init_stage=init_stage, export=export))


def pipeline(stages: dict, data_source: str) -> ml_collections.ConfigDict:
  """A pipeline config: seed, data source and mesh shared by every stage, an optional external teacher."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = ml_collections.ConfigDict(dict(source=data_source))
  c.teacher = ml_collections.ConfigDict(dict(bundle="", workdir="", dtype="float32"))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  c.pipeline = ml_collections.ConfigDict(dict(stages=tuple(stages)))
  c.stages = ml_collections.ConfigDict(stages)
  return c


def teacher_score_matching_objective(**overrides) -> ml_collections.ConfigDict:
  """objective section of teacher_training.TeacherScoreMatching (MSD's TSM: a student regressing the teacher)."""
  return ml_collections.ConfigDict(dict(name="teacher_score_matching", t_eps=1e-3) | overrides)


def multi_student_section(k: int = 4, **overrides) -> ml_collections.ConfigDict:
  """multi_student: k students (0: off), each serving one part of the condition space (distill/partitions.py:
  partition 'blocks', 'table' (+ table), 'kmeans' or 'noise'), wrapping the stage's objective
  (distill/objectives/multi_student.py); `shared` names groups kept single (e.g. ('fake',)); full_set adds rows from
  the whole data set for full-set paired regression (MSD's lesson); layout 'vmap' runs the students as one vmapped
  call, 'unroll' (the fastest for convolutional students on CPU) and 'map' one after another (same values)."""
  return ml_collections.ConfigDict(dict(k=k, partition="blocks", table=(), shared=(), full_set=False,
                                        kmeans_iters=20, layout="vmap") | overrides)


def multi_student_pipeline(stages: dict, data_source: str, distill_stage: str = "distill") -> ml_collections.ConfigDict:
  """A pipeline whose top-level `multi_student` and `objective` are the distill stage's own sections (one object
  each, so --config.multi_student.k=K configures that stage), with a 'student' mesh axis (default size 1)."""
  c = pipeline(stages, data_source)
  c.mesh.student = 1
  c.multi_student = c.stages[distill_stage].config.multi_student
  c.objective = c.stages[distill_stage].config.objective
  return c


def pool_section(layers, **overrides) -> ml_collections.ConfigDict:
  """objective.pool: a discriminator pool on the teacher's feature `layers` (distill/pool.py; names: the teacher
  model's feature_names(), e.g. block0.. for the MLP, level0.., mid for the U-Net) and its term in the student's loss
  (distill/objectives/adversarial.py). start -1: when the base objective's warm-up ends; max_memory_gb 0: the
  device's memory."""
  return ml_collections.ConfigDict(dict(
      layers=tuple(layers), kinds=("global",), groups=4, heads_per_slot=4, sample_per_slot=1, refresh=0.01, loss="ns",
      r1_weight=0.0, hidden=64, t_dist="groups", u_min=0.02, u_max=0.98, logit_mean=0.0, logit_std=1.0, shift=1.0,
      weight=1.0, weight_mode="fixed", calibration_steps=100, learning_rate=1e-4, b1=0.0,
      b2=0.99, start=-1, max_memory_gb=0.0) | overrides)


def adversarial_objective(pool: ml_collections.ConfigDict, levels=(999.0,), level_probs=(1.0,),
                          **overrides) -> ml_collections.ConfigDict:
  """objective section of pure adversarial distillation (objectives/adversarial.py: NitroFusion / LADD): the student
  (from the teacher) at EDM noise `levels` (levels[0]: the one-step level), judged by the pool, optional regression
  to the paired teacher sample."""
  return ml_collections.ConfigDict(dict(
      name="adversarial", init="teacher", levels=tuple(levels), level_probs=tuple(level_probs), regression_weight=0.0,
      regression_distance="l2", lpips_weights="", lpips_resize=0, pool=pool) | overrides)


def schedule_sampler(c: ml_collections.ConfigDict, levels, steps: int = 1) -> None:
  """Export a few-step student with its trained levels: `sample(..., steps=k)` for k = 1..len(levels)."""
  c.sampler.update(solver="student", grid="schedule", sigmas=tuple(float(v) for v in levels), steps=steps)


def boss_objective(bellman_file: str = "") -> ml_collections.ConfigDict:
  """objective section of the BOSS straightening fine-tune (distill/objectives/boss.py) on a `distill boss` grid."""
  return ml_collections.ConfigDict(dict(name="boss", bellman_file=bellman_file, init="teacher"))


# ----- trajectory baselines (spec reflow_trajectory_family.md §3, §7) ---------------------------------------------


def consistency_stage(teacher: ml_collections.ConfigDict, num_steps: int, learning_rate: float, sigma_max: float,
                      levels: tuple, **objective) -> ml_collections.ConfigDict:
  """Turn an EDM teacher's config into a consistency distillation (mode 'distillation') or training stage: the
  student has the consistency parameterisation at the teacher's sigma_data, starts from the teacher, trains with
  Adam and no EMA target (iCT's defaults: lognormal pairs, pseudo-Huber, 1 / delta-sigma weights, the exponential
  curriculum over the stage), and samples with the multistep consistency sampler on `levels` (levels[0] =
  sigma_max; `steps` 1..len(levels))."""
  c = teacher
  sigma_data = c.parameterization.get("sigma_data", 0.5)
  c.parameterization = ml_collections.ConfigDict(dict(name="consistency", sigma_data=sigma_data, sigma_min=0.002))
  c.objective = ml_collections.ConfigDict(dict(
      name="consistency", mode="distillation", curriculum="ict", scales=18, s0=10, s1=1280,
      curriculum_steps=num_steps, mu0=0.0, index_sampling="lognormal", p_mean=-1.1, p_std=2.0, weighting="ict",
      distance="pseudo_huber", huber_c=0.00054, teacher_solver="heun", sigma_max=sigma_max, rho=7.0,
      lpips_weights="", lpips_resize=0, init="teacher") | objective)
  c.optim.update(learning_rate=learning_rate, warmup_steps=0, schedule="constant", decay_steps=0)
  c.train.update(num_steps=num_steps, eval_every=num_steps)
  c.sampler.update(solver="student", grid="schedule", sigmas=tuple(levels), steps=1)
  return c


def progressive_stage(teacher: ml_collections.ConfigDict, student_steps: int, num_steps: int,
                      learning_rate: float) -> ml_collections.ConfigDict:
  """One progressive-distillation round (2N -> N = student_steps) of a teacher's config: the paper's Adam with the
  rate decayed linearly to 0 within the round, no EMA, and Euler (= DDIM) sampling on the student's N-step grid."""
  c = teacher
  c.objective = ml_collections.ConfigDict(dict(name="progressive", student_steps=student_steps, t_eps=1e-3,
                                               init="teacher"))
  c.optim.update(learning_rate=learning_rate, warmup_steps=0, schedule="linear", decay_start=0,
                 decay_steps=num_steps)
  c.ema.update(decay=0.0, warmup=False)
  c.train.update(num_steps=num_steps, eval_every=num_steps)
  c.sampler.update(solver="euler", grid="uniform_t", steps=student_steps, t_eps=1e-3)
  return c


def progressive_pipeline(teacher: ml_collections.ConfigDict, teacher_steps: int, num_steps: int,
                         learning_rate: float, data_source: str) -> ml_collections.ConfigDict:
  """teacher -> rounds pd<N> for N = teacher_steps / 2, ..., 1 (a power of 2), each initialised from and taught by
  the previous stage."""
  import copy

  if teacher_steps < 2 or teacher_steps & (teacher_steps - 1):
    raise ValueError(f"progressive distillation halves a power-of-2 step count >= 2, got {teacher_steps}")
  stages, previous, n = {"teacher": train_stage(copy.deepcopy(teacher))}, "teacher", teacher_steps // 2
  while n >= 1:
    name = f"pd{n}"
    round_config = progressive_stage(copy.deepcopy(teacher), n, num_steps, learning_rate)
    init = "" if previous == "teacher" else previous  # round 1 starts from the teacher's weights (objective.init)
    stages[name] = train_stage(round_config, teacher_stage=previous, init_stage=init)
    previous, n = name, n // 2
  return pipeline(stages, data_source)


def boot_stage(teacher: ml_collections.ConfigDict, num_steps: int, learning_rate: float, sigma_max: float,
               **objective) -> ml_collections.ConfigDict:
  """Turn an EDM teacher's config into a BOOT stage: a `signal`-parameterised student from the teacher's weights,
  Adam, EMA 0.999, sampled in one evaluation (the one-level schedule: D(sigma_max z; sigma_max) = g(z, 0))."""
  c = teacher
  sigma_data = c.parameterization.get("sigma_data", 0.5)
  c.parameterization = ml_collections.ConfigDict(dict(name="signal", sigma_data=sigma_data, sigma_min=0.002))
  c.objective = ml_collections.ConfigDict(dict(name="boot", levels=32, sigma_max=sigma_max, rho=7.0,
                                               boundary_weight=1.0, init="teacher") | objective)
  c.optim.update(learning_rate=learning_rate, warmup_steps=0, schedule="constant", decay_steps=0)
  c.ema.update(decay=0.999, warmup=True)
  c.train.update(num_steps=num_steps, eval_every=num_steps)
  c.sampler.update(solver="student", grid="schedule", sigmas=(sigma_max,), steps=1)
  return c


# ----- restoration (OFTSR, spec reflow_trajectory_family.md §5) ----------------------------------------------------


def restoration_teacher(c: ml_collections.ConfigDict, operator: str, sigma_y: float, sigma_p: float,
                        steps: int) -> ml_collections.ConfigDict:
  """Turn a flow teacher's config into a noise-augmented conditional restoration flow (distill/restoration.py): the
  network sees the lifted measurement as extra input channels, and the bundle restores with `steps` Euler steps.
  In-training sampling from noise does not apply (evaluate with `distill restore`)."""
  c.model.source_conditional = True
  c.objective = ml_collections.ConfigDict(dict(name="restoration_flow", degradation=ml_collections.ConfigDict(
      dict(operator=operator, sigma_y=sigma_y, sigma_p=sigma_p))))
  c.train.eval_every = 0
  c.sampler.update(solver="euler", grid="uniform_t", steps=steps)
  return c


def oftsr_stage(teacher: ml_collections.ConfigDict, num_steps: int, learning_rate: float,
                **objective) -> ml_collections.ConfigDict:
  """The OFTSR student of a restoration teacher's config: initialised from the teacher, the official loss weights
  and time range (distill/objectives/restoration.py), Adam at a constant rate after a warm-up, EMA 0.999."""
  c = teacher
  c.objective = ml_collections.ConfigDict(dict(
      name="oftsr", t_min=0.01, t_max=0.99, t_step=0.05, rk2_r=0.5, distil_weight=1.0, boundary_weight=0.1,
      align_weight=0.01, init="teacher") | objective)
  c.optim.update(learning_rate=learning_rate, warmup_steps=min(500, num_steps // 10), schedule="constant",
                 decay_steps=0)
  c.ema.update(decay=0.999, warmup=True)
  c.train.update(num_steps=num_steps, eval_every=0)
  c.sampler.update(steps=1)
  return c

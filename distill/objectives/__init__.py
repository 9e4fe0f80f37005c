"""Objective registry: `build(config, data_spec, teacher) -> Objective`, selected by config.objective.name.

Each entry is a plain factory; adding a method means adding a module and one line here.
"""

from __future__ import annotations

import os

from distill.errors import UserError
from distill.networks import network_from_config
from distill.objectives.adversarial import PairedStudent, WithPool
from distill.objectives.base import Objective, ParamGroup
from distill.objectives.boss import BOSSStraighten
from distill.objectives.multi_student import MultiStudent, MultiStudentWithPostUpdate
from distill.objectives.reflow import FlowGuidedDistillation, Reflow
from distill.objectives.score_distillation import ScoreDistillation
from distill.objectives.teacher_training import EDMDenoising, FlowMatching, TeacherScoreMatching
from distill.objectives.two_network import TwoNetworkDemo


def _options(config, exclude=("name",)) -> dict:
  return {k: v for k, v in config.objective.items() if k not in exclude}


def _single_group(config, data_spec) -> dict:
  net = network_from_config(config.model, config.parameterization, data_spec)
  return {"model": ParamGroup(net, config.optim.to_dict())}


def _edm(config, data_spec, teacher):
  del teacher
  options = _options(config)
  options.setdefault("sigma_data", config.parameterization.get("sigma_data", 0.5))
  return EDMDenoising(groups=_single_group(config, data_spec), **options)


def _flow_matching(config, data_spec, teacher):
  del teacher
  return FlowMatching(groups=_single_group(config, data_spec), **_options(config))


def _teacher_score_matching(config, data_spec, teacher):
  """A student of config.model (e.g. smaller than the teacher), from random weights, regressing the teacher."""
  if teacher is None:
    raise UserError("teacher score matching regresses a teacher: set teacher.bundle or teacher.workdir")
  net = network_from_config(config.model, config.parameterization, data_spec)
  if bool(dict(net.model_kwargs).get("num_classes")) != bool(dict(teacher.network.model_kwargs).get("num_classes")):
    raise UserError("teacher score matching needs the student and the teacher both class-conditional or both not")
  return TeacherScoreMatching(groups=_single_group(config, data_spec), teacher_network=teacher.network,
                              **_options(config))


def _two_network_demo(config, data_spec, teacher):
  net = network_from_config(config.model, config.parameterization, data_spec)
  b_optim = config.optim.to_dict() | {"learning_rate": config.objective.b_learning_rate}
  init_a = "teacher" if config.objective.get("a_from_teacher", False) else "random"
  groups = {"a": ParamGroup(net, config.optim.to_dict(), init=init_a),
            "b": ParamGroup(net, b_optim, every=config.objective.b_every, offset=config.objective.b_every - 1)}
  return TwoNetworkDemo(groups=groups, teacher_network=None if teacher is None else teacher.network)


def _initial(init: str, net, teacher, key: str, any_parameterization: bool = False) -> dict:
  """ParamGroup init fields for objective.<key>: 'teacher', 'random', or the path of an exported sampler bundle
  (`distill export`) with the configured architecture, e.g. a student distilled earlier. `any_parameterization`: the
  student may start from a teacher with the same model but another output parameterisation (a consistency student
  from an EDM teacher)."""
  if init == "random":
    return {"init": "random"}
  if init == "teacher":
    same = net.same_model if any_parameterization else net.same_architecture
    if teacher is None or not same(teacher.network):
      raise UserError(f"objective.{key}='teacher' needs a configured teacher (teacher.bundle or teacher.workdir) "
                      f"with the student's architecture; use objective.{key}='random' for a different student")
    return {"init": "teacher"}
  import samplers

  if not os.path.isdir(init):
    raise UserError(f"objective.{key} must be 'teacher', 'random' or the directory of an exported sampler bundle; "
                    f"{init!r} is none of them")
  loaded = samplers.load(init)
  mismatch = _architecture_mismatch(net, loaded.network)
  if mismatch:
    raise UserError(f"objective.{key}: the bundle {init} does not match the configured architecture "
                    f"(bundle -> config: {mismatch})")
  return {"init": "bundle", "init_params": loaded.params}


def _student_group(config, data_spec, teacher, any_parameterization: bool = False) -> dict:
  """The single student group, initialised as objective.init says (see _initial)."""
  net = network_from_config(config.model, config.parameterization, data_spec)
  return {"model": ParamGroup(net, config.optim.to_dict(),
                              **_initial(config.objective.init, net, teacher, "init", any_parameterization))}


def _lpips_option(config, kind: str) -> dict:
  """{'lpips': frozen LPIPS} for the LPIPS distances: the user's converted weights (objective.lpips_weights, '' for
  the default path), images resized to objective.lpips_resize (0: as they are); {} for the other distances."""
  from distill.lpips_weights import load_lpips_distance
  from distill.objectives.reflow import IMAGE_DISTANCES

  if kind not in IMAGE_DISTANCES:
    return {}
  return {"lpips": load_lpips_distance(config.objective.lpips_weights, config.objective.lpips_resize)}


POOL_KEYS = ("layers", "kinds", "groups", "heads_per_slot", "sample_per_slot", "refresh", "loss", "r1_weight", "hidden",
             "t_dist", "u_min", "u_max", "logit_mean", "logit_std", "shift")  # -> distill.pool.PoolConfig
POOL_TERM_KEYS = ("weight", "weight_mode", "calibration_steps")  # -> WithPool
POOL_OPTIM_KEYS = ("learning_rate", "b1", "b2")  # the heads' Adam (constant rate, no warm-up, no weight decay)


def _with_pool(config, data_spec, teacher, base, student_group: str, start: int):
  """`base` with a discriminator pool on the teacher's features (objective.pool; see distill/pool.py and
  objectives/adversarial.py); objective.pool.start < 0 starts the adversarial term at `start`."""
  from distill.pool import DiscriminatorPool, PoolConfig, check_memory

  if teacher is None:
    raise UserError("a discriminator pool judges the teacher's features: set teacher.bundle or teacher.workdir")
  o = config.objective.pool
  unknown = sorted(set(o) - set(POOL_KEYS) - set(POOL_TERM_KEYS) - set(POOL_OPTIM_KEYS) - {"start", "max_memory_gb"})
  if unknown:
    raise UserError(f"unknown objective.pool key(s) {unknown}")
  pool_config = PoolConfig(**{k: tuple(o[k]) if k in ("layers", "kinds") else o[k] for k in POOL_KEYS if k in o})
  pool = DiscriminatorPool.create(pool_config, teacher.network, data_spec.shape)
  check_memory(pool, config.data.batch_size, o.get("max_memory_gb", 0.0))
  optim = {"name": "adam", "eps": 1e-8, "clip_norm": config.optim.get("clip_norm", 0.0), "warmup_steps": 0,
           "schedule": "constant", **{k: o[k] for k in POOL_OPTIM_KEYS if k in o}}
  term = {k: o[k] for k in POOL_TERM_KEYS if k in o}
  return WithPool(base, pool, optim, student_group, start=start if o.get("start", -1) < 0 else o.start, **term)


def _adversarial_option(config) -> str:
  """objective.adversarial: '' (none) or 'pool'."""
  kind = config.objective.get("adversarial", "")
  if kind not in ("", "pool"):
    raise UserError(f"objective.adversarial must be '' or 'pool', got {kind!r}")
  return kind


def _distance_options(config) -> dict:
  return _options(config, ("name", "init", "lpips_weights", "lpips_resize", "adversarial", "pool")) | _lpips_option(
      config, config.objective.distance)


def _reflow(config, data_spec, teacher):
  if config.objective.online and teacher is None:
    raise UserError("objective.online=True generates pairs with the teacher: set teacher.bundle or teacher.workdir")
  reflow = Reflow(groups=_student_group(config, data_spec, teacher),
                  teacher_network=None if teacher is None else teacher.network, **_distance_options(config))
  if not _adversarial_option(config):
    return reflow
  if reflow.time != "t0" or reflow.online:
    raise UserError("objective.adversarial='pool' on reflow needs one-step distillation on stored pairs "
                    "(objective.time='t0', objective.online=False)")
  return _with_pool(config, data_spec, teacher, reflow, "model", 0)


def _adversarial(config, data_spec, teacher):
  """Pure adversarial distillation (NitroFusion / LADD): the student (from the teacher or a bundle) judged by a pool
  on the teacher's features, the data (teacher pairs) as the real set, optional regression to the paired sample."""
  if teacher is None:
    raise UserError("adversarial distillation needs a teacher (its features feed the pool): set teacher.bundle or "
                    "teacher.workdir")
  o = config.objective
  student = PairedStudent(
      groups={"generator": _student_group(config, data_spec, teacher)["model"]}, levels=tuple(o.levels),
      level_probs=tuple(o.level_probs), regression_weight=o.regression_weight,
      regression_distance=o.regression_distance,
      **(_lpips_option(config, o.regression_distance) if o.regression_weight > 0 else {}))
  return _with_pool(config, data_spec, teacher, student, "generator", 0)


def _flow_guided(config, data_spec, teacher):
  if teacher is None:
    raise UserError("flow_guided distillation needs the guide flow (a 2-rectified flow) as teacher.bundle or "
                    "teacher.workdir")
  return FlowGuidedDistillation(groups=_student_group(config, data_spec, teacher), guide_network=teacher.network,
                                **_distance_options(config))


def _boss(config, data_spec, teacher):
  from distill.boss import read_grid

  grid = read_grid(config.objective.bellman_file)
  if teacher is None or teacher.bundle_meta.get("checksum") != grid["checksum"]:
    raise UserError(f"the Bellman grid {config.objective.bellman_file} was computed for model "
                    f"{grid['checksum'][:12]}...: configure that model as teacher.bundle")
  return BOSSStraighten(groups=_student_group(config, data_spec, teacher), teacher_network=teacher.network,
                        t_fine=tuple(grid["t_fine"]), nodes=tuple(grid["nodes"]))


def _parameterization_named(config, name: str, method: str) -> None:
  if config.parameterization.name != name:
    raise UserError(f"{method} trains a {name!r}-parameterised student: set parameterization.name={name!r} (got "
                    f"{config.parameterization.name!r})")


def _consistency(config, data_spec, teacher):
  """Consistency distillation (objective.mode='distillation', the configured teacher's ODE steps) or training
  ('training', no teacher in the loss; the teacher, if any, may still initialise the student)."""
  from distill.objectives.consistency import Consistency

  _parameterization_named(config, "consistency", "consistency distillation / training")
  mode = config.objective.mode
  if mode not in ("distillation", "training"):
    raise UserError(f"objective.mode must be 'distillation' or 'training', got {mode!r}")
  if mode == "distillation" and teacher is None:
    raise UserError("consistency distillation steps the teacher's ODE: set teacher.bundle or teacher.workdir, or "
                    "use objective.mode='training'")
  options = _options(config, ("name", "mode", "init", "lpips_weights", "lpips_resize"))
  return Consistency(groups=_student_group(config, data_spec, teacher, any_parameterization=True),
                     teacher_network=teacher.network if mode == "distillation" else None,
                     sigma_min=config.parameterization.get("sigma_min", 0.002),
                     **options, **_lpips_option(config, config.objective.distance))


def _progressive(config, data_spec, teacher):
  from distill.objectives.progressive import ProgressiveDistillation

  if teacher is None:
    raise UserError("progressive distillation halves a teacher's steps: set teacher.bundle or teacher.workdir")
  return ProgressiveDistillation(groups=_student_group(config, data_spec, teacher), teacher_network=teacher.network,
                                 **_options(config, ("name", "init")))


def _boot(config, data_spec, teacher):
  from distill.objectives.boot import Boot

  _parameterization_named(config, "signal", "BOOT")
  if teacher is None:
    raise UserError("BOOT bootstraps a teacher's trajectories: set teacher.bundle or teacher.workdir")
  return Boot(groups=_student_group(config, data_spec, teacher, any_parameterization=True),
              teacher_network=teacher.network, sigma_min=config.parameterization.get("sigma_min", 0.002),
              **_options(config, ("name", "init")))


def _restoration_network(config, data_spec, method: str):
  """A restoration network must be velocity-parameterised and conditioned on the source."""
  _parameterization_named(config, "velocity", method)
  if not config.model.get("source_conditional", False):
    raise UserError(f"{method} conditions the network on the degraded input: set model.source_conditional=True")


def _restoration_flow(config, data_spec, teacher):
  from distill.objectives.restoration import RestorationFlowMatching
  from distill.restoration import degradation_from_config

  del teacher
  _restoration_network(config, data_spec, "restoration flow matching")
  try:
    degradation = degradation_from_config(config.objective.degradation)
    degradation.check_shape(data_spec.shape)
  except (KeyError, ValueError) as e:
    raise UserError(f"objective.degradation: {e}") from None
  return RestorationFlowMatching(groups=_single_group(config, data_spec), degradation=degradation)


def _oftsr(config, data_spec, teacher):
  """The one-step student of a restoration teacher; the degradation is the teacher bundle's own."""
  from distill.objectives.restoration import OFTSR
  from distill.restoration import degradation_from_config

  _restoration_network(config, data_spec, "OFTSR")
  restoration = (teacher.bundle_meta.get("restoration") if teacher is not None else None)
  if not restoration:
    raise UserError("OFTSR distils a restoration teacher (objective 'restoration_flow'): set teacher.bundle or "
                    "teacher.workdir to one")
  return OFTSR(groups=_student_group(config, data_spec, teacher), teacher_network=teacher.network,
               degradation=degradation_from_config(restoration), **_options(config, ("name", "init")))


def _architecture_mismatch(net, teacher_net) -> str:
  """A readable list of how two networks differ ('' when they are the same)."""
  if net.same_architecture(teacher_net):
    return ""
  ours, theirs = dict(net.model_kwargs), dict(teacher_net.model_kwargs)
  diffs = [f"model {teacher_net.model_name!r} -> {net.model_name!r}"] if net.model_name != teacher_net.model_name else []
  diffs += [f"model.{k} {theirs.get(k)!r} -> {ours.get(k)!r}" for k in sorted(set(ours) | set(theirs))
            if ours.get(k) != theirs.get(k)]
  if net.parameterization != teacher_net.parameterization:
    diffs.append(f"parameterization {teacher_net.parameterization} -> {net.parameterization}")
  return ", ".join(diffs)


# objective keys the builder consumes (networks, initialisation, optimisers, LPIPS); the rest go to ScoreDistillation.
SCORE_DISTILLATION_BUILDER_KEYS = ("name", "discriminator", "disc_init", "generator_init", "generator_every",
                                   "fake_learning_rate", "disc_learning_rate", "critic_schedule", "lpips_weights",
                                   "lpips_resize", "adversarial", "pool")


def _score_distillation(config, data_spec, teacher):
  """The fake score starts from the teacher (same architecture); the generator from the teacher or an exported bundle
  (objective.generator_init); the optional discriminator has the same architecture, initialised from the teacher or
  at random (objective.disc_init). Fake score and discriminator share the generator's optimiser settings but their own
  learning rates; critic_schedule='constant' keeps their rate constant while the generator's follows optim.schedule."""
  if teacher is None:
    raise UserError("score distillation needs a teacher: set teacher.bundle or teacher.workdir")
  o = config.objective
  net = network_from_config(config.model, config.parameterization, data_spec)
  mismatch = _architecture_mismatch(net, teacher.network)
  if mismatch:
    raise UserError(f"the teacher does not match the configured architecture (teacher -> config: {mismatch}); "
                    "generator and fake score start from the teacher, so configure the teacher's model")
  optim = config.optim.to_dict()
  every = int(o.generator_every)
  if every < 1:
    raise UserError(f"objective.generator_every must be >= 1, got {every}")
  critic_schedule = o.get("critic_schedule", "")  # absent from the configs of workdirs written before it existed
  if critic_schedule not in ("", "constant"):
    raise UserError(f"objective.critic_schedule must be '' (the generator's optim.schedule) or 'constant', "
                    f"got {critic_schedule!r}")
  critic = optim | ({"schedule": "constant"} if critic_schedule else {})
  groups = {"fake": ParamGroup(net, critic | {"learning_rate": o.fake_learning_rate or optim["learning_rate"]},
                               init="teacher")}
  if o.discriminator or (o.gan_weight > 0 and not _adversarial_option(config)):
    if o.disc_init not in ("teacher", "random"):
      raise UserError(f"objective.disc_init must be 'teacher' or 'random', got {o.disc_init!r}")
    groups["disc"] = ParamGroup(net, critic | {"learning_rate": o.disc_learning_rate or optim["learning_rate"]},
                                init=o.disc_init)
  groups["generator"] = ParamGroup(net, optim, every=every, offset=every - 1,
                                   **_initial(o.generator_init, net, teacher, "generator_init"))
  options = _options(config, SCORE_DISTILLATION_BUILDER_KEYS)
  if o.regression_weight > 0:
    options |= _lpips_option(config, o.regression_distance)
  distillation = ScoreDistillation(groups=groups, teacher_network=teacher.network, **options)
  if not _adversarial_option(config):
    return distillation
  if o.gan_weight > 0:
    raise UserError("objective.adversarial='pool' replaces the single discriminator's GAN term: set "
                    "objective.gan_weight=0 and weight the pool by objective.pool.weight")
  return _with_pool(config, data_spec, teacher, distillation, "generator", distillation.warmup_steps)


REGISTRY = {
    "edm": _edm,
    "flow_matching": _flow_matching,
    "teacher_score_matching": _teacher_score_matching,
    "two_network_demo": _two_network_demo,
    "reflow": _reflow,
    "flow_guided": _flow_guided,
    "boss": _boss,
    "score_distillation": _score_distillation,
    "adversarial": _adversarial,
    "consistency": _consistency,
    "progressive": _progressive,
    "boot": _boot,
    "restoration_flow": _restoration_flow,
    "oftsr": _oftsr,
}


NOISE_ROUTED = ("reflow", "adversarial")  # objectives whose student starts from the batch's pair noise


def build(config, data_spec, teacher=None, router=None) -> Objective:
  """The objective of config.objective.name; with a multi-student `router` (distill/stacked.py), wrapped so that
  one student per part of the router's partition is trained (objectives/multi_student.py)."""
  name = config.objective.name
  if name not in REGISTRY:
    raise ValueError(f"unknown objective {name!r}; choose one of {sorted(REGISTRY)}")
  objective = REGISTRY[name](config, data_spec, teacher)
  if router is None:
    return objective
  if router.needs_noise and name not in NOISE_ROUTED:
    raise UserError(f"multi_student.partition='noise' trains student k on the pairs whose noise lies in its cell; "
                    f"objective {name!r} draws its own noise: use one of {', '.join(NOISE_ROUTED)} or a class "
                    "partition")
  wrapper = MultiStudentWithPostUpdate if hasattr(objective, "post_group_update") else MultiStudent
  try:
    return wrapper(objective, router, shared=tuple(config.multi_student.get("shared", ())),
                   layout=config.multi_student.get("layout", "vmap"))
  except ValueError as e:
    raise UserError(str(e)) from None


__all__ = ["Objective", "ParamGroup", "REGISTRY", "build"]

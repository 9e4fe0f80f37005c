"""Objective registry: `build(config, data_spec, teacher) -> Objective`, selected by config.objective.name.

Each entry is a plain factory; adding a method means adding a module and one line here.
"""

from __future__ import annotations

import os

from distill.errors import UserError
from distill.networks import network_from_config
from distill.objectives.base import Objective, ParamGroup
from distill.objectives.boss import BOSSStraighten
from distill.objectives.reflow import FlowGuidedDistillation, Reflow
from distill.objectives.score_distillation import ScoreDistillation
from distill.objectives.teacher_training import EDMDenoising, FlowMatching
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


def _two_network_demo(config, data_spec, teacher):
  net = network_from_config(config.model, config.parameterization, data_spec)
  b_optim = config.optim.to_dict() | {"learning_rate": config.objective.b_learning_rate}
  init_a = "teacher" if config.objective.get("a_from_teacher", False) else "random"
  groups = {"a": ParamGroup(net, config.optim.to_dict(), init=init_a),
            "b": ParamGroup(net, b_optim, every=config.objective.b_every, offset=config.objective.b_every - 1)}
  return TwoNetworkDemo(groups=groups, teacher_network=None if teacher is None else teacher.network)


def _initial(init: str, net, teacher, key: str) -> dict:
  """ParamGroup init fields for objective.<key>: 'teacher', 'random', or the path of an exported sampler bundle
  (`distill export`) with the configured architecture, e.g. a student distilled earlier."""
  if init == "random":
    return {"init": "random"}
  if init == "teacher":
    if teacher is None or not net.same_architecture(teacher.network):
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


def _student_group(config, data_spec, teacher) -> dict:
  """The single student group, initialised as objective.init says (see _initial)."""
  net = network_from_config(config.model, config.parameterization, data_spec)
  return {"model": ParamGroup(net, config.optim.to_dict(), **_initial(config.objective.init, net, teacher, "init"))}


def _lpips_option(config, kind: str) -> dict:
  """{'lpips': frozen LPIPS} for the LPIPS distances: the user's converted weights (objective.lpips_weights, '' for
  the default path), images resized to objective.lpips_resize (0: as they are); {} for the other distances."""
  from distill.lpips_weights import load_lpips_distance
  from distill.objectives.reflow import IMAGE_DISTANCES

  if kind not in IMAGE_DISTANCES:
    return {}
  return {"lpips": load_lpips_distance(config.objective.lpips_weights, config.objective.lpips_resize)}


def _distance_options(config) -> dict:
  return _options(config, ("name", "init", "lpips_weights", "lpips_resize")) | _lpips_option(
      config, config.objective.distance)


def _reflow(config, data_spec, teacher):
  if config.objective.online and teacher is None:
    raise UserError("objective.online=True generates pairs with the teacher: set teacher.bundle or teacher.workdir")
  return Reflow(groups=_student_group(config, data_spec, teacher),
                teacher_network=None if teacher is None else teacher.network, **_distance_options(config))


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
                                   "lpips_resize")


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
  if o.discriminator or o.gan_weight > 0:
    if o.disc_init not in ("teacher", "random"):
      raise UserError(f"objective.disc_init must be 'teacher' or 'random', got {o.disc_init!r}")
    groups["disc"] = ParamGroup(net, critic | {"learning_rate": o.disc_learning_rate or optim["learning_rate"]},
                                init=o.disc_init)
  groups["generator"] = ParamGroup(net, optim, every=every, offset=every - 1,
                                   **_initial(o.generator_init, net, teacher, "generator_init"))
  options = _options(config, SCORE_DISTILLATION_BUILDER_KEYS)
  if o.regression_weight > 0:
    options |= _lpips_option(config, o.regression_distance)
  return ScoreDistillation(groups=groups, teacher_network=teacher.network, **options)


REGISTRY = {
    "edm": _edm,
    "flow_matching": _flow_matching,
    "two_network_demo": _two_network_demo,
    "reflow": _reflow,
    "flow_guided": _flow_guided,
    "boss": _boss,
    "score_distillation": _score_distillation,
}


def build(config, data_spec, teacher=None) -> Objective:
  name = config.objective.name
  if name not in REGISTRY:
    raise ValueError(f"unknown objective {name!r}; choose one of {sorted(REGISTRY)}")
  return REGISTRY[name](config, data_spec, teacher)


__all__ = ["Objective", "ParamGroup", "REGISTRY", "build"]

"""Objective registry: `build(config, data_spec, teacher) -> Objective`, selected by config.objective.name.

Each entry is a plain factory; adding a method means adding a module and one line here.
"""

from __future__ import annotations

from distill.networks import network_from_config
from distill.errors import UserError
from distill.objectives.base import Objective, ParamGroup
from distill.objectives.boss import BOSSStraighten
from distill.objectives.reflow import FlowGuidedDistillation, Reflow
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


def _student_group(config, data_spec, teacher) -> dict:
  """The single student group; objective.init 'teacher' copies the teacher (same architecture required)."""
  net = network_from_config(config.model, config.parameterization, data_spec)
  init = config.objective.init
  if init not in ("teacher", "random"):
    raise UserError(f"objective.init must be 'teacher' or 'random', got {init!r}")
  if init == "teacher" and (teacher is None or teacher.network != net):
    raise UserError("objective.init='teacher' needs a configured teacher (teacher.bundle or teacher.workdir) with "
                    "the student's architecture; use objective.init='random' for a different student")
  return {"model": ParamGroup(net, config.optim.to_dict(), init=init)}


def _distance_options(config) -> dict:
  """The reflow distance options; the LPIPS kinds load the user's converted weights (objective.lpips_weights, ''
  for the default path) into a frozen LPIPS, resizing images to objective.lpips_resize (0: as they are)."""
  from distill.lpips_weights import load_lpips_distance
  from distill.objectives.reflow import IMAGE_DISTANCES

  options = _options(config, ("name", "init", "lpips_weights", "lpips_resize"))
  if config.objective.distance in IMAGE_DISTANCES:
    options["lpips"] = load_lpips_distance(config.objective.lpips_weights, config.objective.lpips_resize)
  return options


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


REGISTRY = {
    "edm": _edm,
    "flow_matching": _flow_matching,
    "two_network_demo": _two_network_demo,
    "reflow": _reflow,
    "flow_guided": _flow_guided,
    "boss": _boss,
}


def build(config, data_spec, teacher=None) -> Objective:
  name = config.objective.name
  if name not in REGISTRY:
    raise ValueError(f"unknown objective {name!r}; choose one of {sorted(REGISTRY)}")
  return REGISTRY[name](config, data_spec, teacher)


__all__ = ["Objective", "ParamGroup", "REGISTRY", "build"]

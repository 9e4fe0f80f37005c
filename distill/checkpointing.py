"""Training checkpoints (every orbax call of the trainer lives here).

Layout of a workdir: `config.json` (the resolved config of the run), `checkpoints/<step>/{state,config}`, and with
in-training FID `best/<step>/...` (the best checkpoint by FID) and `best.json` ({step, fid}).
Saves are asynchronous and atomic (orbax writes a temporary folder and renames it); keep-last-N plus every-K.
Restoring takes an abstract state whose leaves carry shardings, so restored arrays are born sharded on whatever mesh
the current run uses. Shapes are checked against the checkpoint's metadata first, naming the parameter that differs.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy

from distill.errors import UserError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR, BEST_FILE = "best", "best.json"

# Keys that may change between the original run and a resumed one (they do not change the trained model).
RESUMABLE_KEYS = ("train.num_steps", "train.log_every", "train.eval_every", "train.ckpt_every",
                  "train.keep_last", "train.keep_every", "eval.", "mesh.", "overwrite",
                  "multi_student.layout")  # how the students are computed, not what
# Keys added after runs were made, with the value that reproduces the older behaviour: a saved config without such a
# key matches a current one that holds this value (also inside nested stage configs).
ADDED_KEY_DEFAULTS = {"model.compute_dtype": "float32", "objective.generator_init": "teacher", "init_stage": "",
                      "export": "last", "optim.decay_start": 0}


def path_name(path) -> str:
  """A readable name for a pytree path, e.g. params/model/inp/kernel."""
  parts = []
  for key in path:
    name = getattr(key, "key", getattr(key, "name", getattr(key, "idx", None)))
    if name != "value":
      parts.append(str(name))
  return "/".join(parts)


def _flatten(d: dict, prefix="") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _appended_stages(a: dict, b: dict) -> tuple[str, ...]:
  """The stages a pipeline config b appends to a's pipeline.stages (() unless a's stages are a prefix of b's)."""
  old, new = list(a.get("pipeline.stages") or ()), list(b.get("pipeline.stages") or ())
  return tuple(new[len(old):]) if old and new[:len(old)] == old else ()


def config_differences(saved: dict, current: dict) -> list[str]:
  """Dotted keys whose values differ between two config dicts, ignoring RESUMABLE_KEYS. A pipeline may grow: stages
  appended to pipeline.stages (and their stages.<name> sections) are not differences."""
  a, b = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(current)))
  appended = _appended_stages(a, b)
  if appended:
    b = {k: v for k, v in b.items() if k != "pipeline.stages" and not k.startswith(
        tuple(f"stages.{name}." for name in appended))}
    a = {k: v for k, v in a.items() if k != "pipeline.stages"}
  keys = sorted(set(a) | set(b))
  # Also inside nested stage configs of a pipeline (stages.<name>.config.train.num_steps, ...).
  resumable = lambda k: any(k == r or k.endswith("." + r) or (r.endswith(".") and (k.startswith(r) or f".{r}" in k))
                            for r in RESUMABLE_KEYS)
  added_default = lambda k: k not in a and any((k == r or k.endswith("." + r)) and b[k] == v
                                               for r, v in ADDED_KEY_DEFAULTS.items())
  return [k for k in keys if not resumable(k) and not added_default(k) and a.get(k) != b.get(k)]


def prepare_workdir(workdir: str, config_dict: dict, overwrite: bool) -> None:
  """Create the workdir, or check that an existing run there has the same config (or wipe it if overwrite).

  Every process checks; only process 0 deletes or writes, and all processes wait for it.
  """
  config_path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(config_path) and not overwrite:
    try:
      with open(config_path) as f:
        saved = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise UserError(f"{config_path} is unreadable ({e}); pass --overwrite to start a new run there") from None
    diff = config_differences(saved, config_dict)
    if diff:
      shown = ", ".join(f"{k} ({_flatten(saved).get(k)!r} -> {_flatten(config_dict).get(k)!r})" for k in diff[:5])
      raise UserError(f"workdir {workdir} holds a run with a different config: {shown}; "
                      "use another workdir or pass --overwrite")
  if jax.process_index() == 0:
    if overwrite and os.path.exists(config_path):
      shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    tmp = f"{config_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(config_dict, f, indent=2, sort_keys=True)
    os.replace(tmp, config_path)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("distill:prepare_workdir")


class Checkpoints:
  """Orbax CheckpointManager for the train state (+ the config as JSON beside it)."""

  def __init__(self, workdir: str, keep_last: int = 2, keep_every: int | None = None, subdir: str = CHECKPOINT_DIR):
    policies = [preservation_policy.LatestN(keep_last)]
    if keep_every:
      policies.append(preservation_policy.EveryNSteps(keep_every))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation_policy.AnyPreservationPolicy(policies),
        enable_async_checkpointing=True, create=True, cleanup_tmp_directories=True)
    self.directory = os.path.abspath(os.path.join(workdir, subdir))
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: Any, config_dict: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     config=ocp.args.JsonSave(config_dict)), force=True)

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restore `step` onto the shardings carried by `abstract_state` (jax.ShapeDtypeStruct leaves)."""
    self._check_shapes(step, abstract_state)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise UserError(f"checkpoint step {step} in {self.directory} cannot be restored: {e}") from None
    return restored["state"]

  def _check_shapes(self, step: int, abstract_state: Any) -> None:
    try:
      metadata = self.manager.item_metadata(step)["state"]
    except Exception as e:  # corrupt or partial checkpoint folders surface as many exception types
      raise UserError(f"checkpoint step {step} in {self.directory} is unreadable: {e}") from None
    saved = {path_name(p): getattr(leaf, "shape", None)
             for p, leaf in jax.tree_util.tree_flatten_with_path(metadata)[0]}
    for p, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
      name = path_name(p)
      if name not in saved:
        raise UserError(f"checkpoint step {step} has no entry {name}: it was written by a different model/objective")
      if saved[name] is not None and tuple(saved[name]) != tuple(leaf.shape):
        raise UserError(f"checkpoint parameter {name} has shape {tuple(saved[name])}, "
                        f"the model expects {tuple(leaf.shape)}")

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def read_config(workdir: str) -> dict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir} is not a training workdir (no {CONFIG_FILE})")
  with open(path) as f:
    return json.load(f)


class BestCheckpoint:
  """Keeps the checkpoint with the lowest value of an in-training metric (FID, or energy distance for points) in
  `workdir/best`, and its step, metric and value in `workdir/best.json` (read back on resume, so the best survives
  restarts)."""

  def __init__(self, workdir: str, metric: str = "fid"):
    self.workdir, self.metric = workdir, metric
    self.path = os.path.join(workdir, BEST_FILE)
    self.step, self.value = None, float("inf")
    if os.path.exists(self.path):
      with open(self.path) as f:
        saved = json.load(f)
      if saved.get("metric", "fid") == metric:  # a best by another metric is superseded
        self.step, self.value = saved["step"], saved["value"] if "value" in saved else saved["fid"]

  def offer(self, step: int, value: float, state: Any, config_dict: dict) -> bool:
    """Save `state` if `value` beats the best so far; returns whether it did."""
    if not value < self.value:
      return False
    ckpts = Checkpoints(self.workdir, keep_last=1, subdir=BEST_DIR)
    try:
      ckpts.save(step, state, config_dict)
    finally:
      ckpts.close()
    self.step, self.value = step, float(value)
    if jax.process_index() == 0:
      tmp = f"{self.path}.tmp{os.getpid()}"
      with open(tmp, "w") as f:
        json.dump({"step": step, "metric": self.metric, "value": self.value}, f)
      os.replace(tmp, self.path)
    return True

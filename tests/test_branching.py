"""Branching a run (distill/branching.py): a divergence branched off a shared SiD warm-up trains exactly as the same
divergence from scratch; bad branches are one clear line."""

import json
import os

import pytest

from configs import toy2d_uni_instruct
from distill import api, cli
from distill.errors import UserError

WARMUP, STEPS = 2, 5
DISTILL = "stages.distill.config."
TINY = {"data.source": "toy:moons", "mesh.data": 1, "stages.pairs.num": 128, "stages.pairs.steps": 4,
        DISTILL + "model.width": 32, DISTILL + "model.depth": 2, DISTILL + "model.emb_dim": 16,
        DISTILL + "data.batch_size": 64, DISTILL + "objective.divergence_start": WARMUP,
        DISTILL + "train.ckpt_every": WARMUP, DISTILL + "train.keep_every": WARMUP, DISTILL + "train.log_every": 1,
        DISTILL + "train.eval_every": 0, DISTILL + "eval.fid_every": 1, DISTILL + "eval.fid_num": 256,
        DISTILL + "optim.decay_start": WARMUP, DISTILL + "optim.decay_steps": STEPS}


def _overrides(teacher_bundle, divergence, num_steps):
  """configs/toy2d_uni_instruct.py shrunk to the tiny teacher: the divergence from step WARMUP, energy every step."""
  return {**TINY, "teacher.bundle": teacher_bundle, DISTILL + "objective.divergence": divergence,
          DISTILL + "train.num_steps": num_steps}


def _config(*args):
  config = toy2d_uni_instruct.get_config()
  config.update_from_flattened_dict(_overrides(*args))
  return config


def _losses(workdir):
  rows = map(json.loads, open(os.path.join(workdir, "distill", "metrics.jsonl")))
  return {r["step"]: {k: v for k, v in r.items() if k.endswith("/loss")} for r in rows if "generator/loss" in r}


def test_a_divergence_branched_off_the_warm_up_equals_it_from_scratch(tiny_teacher_bundle, tmp_path):
  trunk, scratch, branched = (str(tmp_path / n) for n in ("trunk", "scratch", "branched"))
  api.train(_config(tiny_teacher_bundle, "rkl", WARMUP), trunk, log=lambda *_: None)
  from_scratch = api.train(_config(tiny_teacher_bundle, "fkl", STEPS), scratch, log=lambda *_: None)
  fkl = _config(tiny_teacher_bundle, "fkl", STEPS)
  api.branch(fkl, trunk, branched, WARMUP)
  from_branch = api.train(fkl, branched, log=lambda *_: None)

  assert json.load(open(os.path.join(branched, "branch.json")))["step"] == WARMUP
  assert _losses(branched) == {s: v for s, v in _losses(scratch).items() if s > WARMUP}
  best = json.load(open(os.path.join(scratch, "distill", "best.json")))
  assert best["step"] > WARMUP and json.load(open(os.path.join(branched, "distill", "best.json"))) == best
  assert from_branch["records"]["distill"]["checksum"] == from_scratch["records"]["distill"]["checksum"]  # the best
  last = [api.load(api.export(w, str(tmp_path / f"{n}_last"), step=STEPS)).meta["checksum"]
          for n, w in (("b", branched), ("s", scratch))]
  assert last[0] == last[1]

  # The test can fail: the warm-up continued under rkl trains differently after it (branched by the command line).
  rkl = str(tmp_path / "rkl")
  flags = [f"--config.{k}={v}" for k, v in _overrides(tiny_teacher_bundle, "rkl", STEPS).items()]
  assert cli.main(["train", "--config", "configs/toy2d_uni_instruct.py", "--workdir", rkl, *flags,
                   "--branch_from", trunk, "--branch_step", str(WARMUP)]) == 0
  assert sorted(_losses(rkl)) == [3, 4, 5] and _losses(rkl)[STEPS] != _losses(scratch)[STEPS]

  # Bad branches, one line each, leaving nothing behind.
  with pytest.raises(UserError, match="is not empty"):
    api.branch(fkl, trunk, branched, WARMUP)
  with pytest.raises(UserError, match=r"has no checkpoint at step 3 \(it has: 2, 4, 5\)"):
    api.branch(fkl, branched, str(tmp_path / "b3"), 3)
  with pytest.raises(UserError, match=f"best checkpoint is at step {best['step']}, past the branch point 2"):
    api.branch(fkl, scratch, str(tmp_path / "b4"), WARMUP)
  other = _config(tiny_teacher_bundle, "fkl", STEPS)
  other.stages.pairs.num = 256
  with pytest.raises(UserError, match="differs before stage 'distill': stages.pairs.num"):
    api.branch(other, trunk, str(tmp_path / "b5"), WARMUP)
  assert not [n for n in os.listdir(tmp_path) if n.startswith(("b3", "b4", "b5"))]

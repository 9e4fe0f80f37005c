"""Branching a run (distill/branching.py): a divergence branched off a shared SiD warm-up trains exactly as the same
divergence from scratch; bad branches are one clear line."""

import json
import os

import pytest

from distill import api
from distill.errors import UserError

WARMUP, STEPS = 2, 5


def _config(teacher_bundle, divergence, num_steps):
  """configs/toy2d_uni_instruct.py shrunk to the tiny teacher: the divergence from step WARMUP, energy every step."""
  from configs import toy2d_uni_instruct

  c = toy2d_uni_instruct.get_config()
  c.data.source, c.teacher.bundle, c.mesh.data = "toy:moons", teacher_bundle, 1
  c.objective.update(divergence=divergence, divergence_start=WARMUP)
  c.stages.pairs.update(num=128, steps=4)
  distill = c.stages.distill.config
  distill.model.update(width=32, depth=2, emb_dim=16)
  distill.data.batch_size = 64
  distill.train.update(num_steps=num_steps, ckpt_every=WARMUP, keep_every=WARMUP, log_every=1, eval_every=0)
  distill.eval.update(fid_every=1, fid_num=256)
  distill.optim.update(decay_start=WARMUP, decay_steps=STEPS)
  return c


def _losses(workdir):
  rows = map(json.loads, open(os.path.join(workdir, "distill", "metrics.jsonl")))
  return {r["step"]: {k: v for k, v in r.items() if k.endswith("/loss")} for r in rows if "generator/loss" in r}


def _checksum(workdir, out, **how):
  return api.load(api.export(workdir, out, **how)).meta["checksum"]


def test_a_divergence_branched_off_the_warm_up_equals_it_from_scratch(tiny_teacher_bundle, tmp_path):
  trunk, scratch, branched = (str(tmp_path / n) for n in ("trunk", "scratch", "branched"))
  api.train(_config(tiny_teacher_bundle, "rkl", WARMUP), trunk, log=lambda *_: None)
  api.train(_config(tiny_teacher_bundle, "fkl", STEPS), scratch, log=lambda *_: None)
  fkl = _config(tiny_teacher_bundle, "fkl", STEPS)
  api.branch(fkl, trunk, branched, WARMUP)
  api.train(fkl, branched, log=lambda *_: None)

  assert json.load(open(os.path.join(branched, "branch.json")))["step"] == WARMUP
  assert _losses(branched) == {s: v for s, v in _losses(scratch).items() if s > WARMUP}
  for name in ("scratch", "branched"):  # the best is a divergence-phase step in both
    assert json.load(open(tmp_path / name / "distill" / "best.json"))["step"] >= WARMUP
  assert (json.load(open(os.path.join(branched, "distill", "best.json")))
          == json.load(open(os.path.join(scratch, "distill", "best.json"))))
  for how in ({"step": STEPS}, {"best": True}):
    assert (_checksum(branched, str(tmp_path / "b_export"), **how)
            == _checksum(scratch, str(tmp_path / "s_export"), **how))

  # The test can fail: the warm-up continued under rkl trains differently after it.
  rkl = _config(tiny_teacher_bundle, "rkl", STEPS)
  api.branch(rkl, trunk, str(tmp_path / "rkl"), WARMUP)
  api.train(rkl, str(tmp_path / "rkl"), log=lambda *_: None)
  assert _losses(str(tmp_path / "rkl"))[STEPS] != _losses(scratch)[STEPS]

  # Bad branches, one line each.
  with pytest.raises(UserError, match="is not empty"):
    api.branch(fkl, trunk, branched, WARMUP)
  with pytest.raises(UserError, match=r"has no checkpoint at step 3 \(it has: 2, 4, 5\)"):
    api.branch(fkl, branched, str(tmp_path / "b3"), 3)
  with pytest.raises(UserError, match="best checkpoint is at step [345], past the branch point 2"):
    api.branch(fkl, scratch, str(tmp_path / "b4"), WARMUP)
  other = _config(tiny_teacher_bundle, "fkl", STEPS)
  other.stages.pairs.num = 256
  with pytest.raises(UserError, match="differs before stage 'distill': stages.pairs.num"):
    api.branch(other, trunk, str(tmp_path / "b5"), WARMUP)
  assert not [n for n in os.listdir(tmp_path) if n.startswith(("b3", "b4", "b5"))]  # nothing left behind

"""The `distill` command: input problems are one line on stderr with exit status 1 (no traceback), and the contract
commands (train, export, sample, eval, loading a bundle from Python) work end to end."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import samplers
from configs import tiny
from distill import checkpointing, cli, data as data_lib, reporting
from distill.evaluation.distances import energy_distance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(os.path.dirname(sys.executable), "distill")
TEST_CACHE = os.path.expanduser("~/.cache/distill/jax-tests")
TINY = os.path.join(REPO, "configs", "tiny.py")


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch):
  """cli.main sets JAX's compilation cache from DISTILL_COMPILATION_CACHE: keep the tests' cache and settings."""
  monkeypatch.delenv("DISTILL_DEBUG", raising=False)
  monkeypatch.setenv("DISTILL_COMPILATION_CACHE", TEST_CACHE)
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  saved = {k: getattr(jax.config, k) for k in names}
  yield
  for k, v in saved.items():
    jax.config.update(k, v)


def distill(capsys, *argv):
  """Run `distill argv...` in-process: (exit status, stdout, stderr)."""
  capsys.readouterr()
  rc = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return rc, out, err


def assert_one_line_error(result, command, *fragments):
  rc, _, err = result
  assert rc == 1, err
  assert "Traceback" not in err
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith(f"distill {command}: error: "), err
  for fragment in fragments:
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def train_args(workdir, *overrides):
  return ["train", "--config", TINY, "--workdir", workdir, *overrides]


@pytest.mark.parametrize("override,fragments", [
    ("--config.optim.nope=1", ["optim.nope"]),
    ("--config.optim.learning_rate=abc", ["optim.learning_rate", "abc"]),
    ("--config.objective.name=nope", ["unknown objective 'nope'", "flow_matching"]),
    ("--config.data.source=toy:nope", ["unknown toy 'nope'", "moons"]),
    ("--config.data.source=foo:bar", ["unknown data scheme in 'foo:bar'", "toy, toyset, npz, tfds"]),
])
def test_train_config_problems_are_one_line(capsys, tmp_path, override, fragments):
  result = distill(capsys, *train_args(tmp_path / "w", override))
  assert_one_line_error(result, "train", *fragments)


def test_train_missing_npz_is_one_line(capsys, tmp_path):
  missing = tmp_path / "missing.npz"
  result = distill(capsys, *train_args(tmp_path / "w", f"--config.data.source=npz:{missing}"))
  assert_one_line_error(result, "train", "npz file not found", str(missing))


def test_failed_train_does_not_claim_the_workdir(capsys, tmp_path):
  """A run that fails on its config (a typo) leaves the workdir usable by the corrected command."""
  workdir = tmp_path / "w"
  assert_one_line_error(distill(capsys, *train_args(workdir, "--config.objective.name=nope")), "train", "nope")
  rc, out, err = distill(capsys, *train_args(workdir, "--config.train.num_steps=2"))
  assert rc == 0, err
  assert "trained to step 2" in out
  assert checkpointing.read_config(str(workdir))["objective"]["name"] == "flow_matching"


def test_train_missing_flags_and_files_are_one_line(capsys, tmp_path):
  assert_one_line_error(distill(capsys, "train", "--config", TINY), "train", "--workdir is required")
  assert_one_line_error(distill(capsys, "train", "--workdir", tmp_path / "w"), "train", "--config is required")
  missing = tmp_path / "nope.py"
  assert_one_line_error(distill(capsys, "train", "--config", missing, "--workdir", tmp_path / "w"), "train",
                        str(missing))
  assert_one_line_error(distill(capsys, "train", "--config", TINY, "--workdir", tmp_path / "w", "--bogus"), "train",
                        "bogus")
  assert not os.path.exists(tmp_path / "w")


def test_non_finite_loss_is_one_line(capsys, tmp_path):
  result = distill(capsys, *train_args(tmp_path / "w", "--config.optim.learning_rate=1e30",
                                       "--config.train.log_every=1", "--config.train.ckpt_every=1"))
  assert_one_line_error(result, "train", "non-finite loss or gradient at step", "last good checkpoint")


def test_export_sample_eval_problems_are_one_line(capsys, tmp_path):
  no_ckpt = tmp_path / "no_ckpt"
  checkpointing.prepare_workdir(str(no_ckpt), tiny.get_config().to_dict(), overwrite=False)
  assert_one_line_error(distill(capsys, "export", "--workdir", no_ckpt), "export", str(no_ckpt), "no checkpoint")
  assert_one_line_error(distill(capsys, "export", "--workdir", tmp_path / "nothing"), "export",
                        "not a training workdir")
  assert_one_line_error(distill(capsys, "export"), "export", "--workdir is required")
  missing = tmp_path / "no_bundle"
  assert_one_line_error(distill(capsys, "sample", "--sampler", missing, "--num", 4, "--out", tmp_path / "s.npz"),
                        "sample", str(missing), "not a sampler bundle")
  assert_one_line_error(distill(capsys, "sample", "--sampler", missing, "--out", tmp_path / "s.npz"), "sample",
                        "--num is required")
  assert not os.path.exists(tmp_path / "s.npz")
  assert_one_line_error(distill(capsys, "eval"), "eval", "exactly one of --workdir and --sampler")
  assert_one_line_error(distill(capsys, "eval", "--workdir", no_ckpt, "--sampler", missing), "eval",
                        "exactly one of --workdir and --sampler")
  assert_one_line_error(distill(capsys, "eval", "--sampler", missing), "eval", "not a sampler bundle")


def test_unknown_command_and_help(capsys):
  rc, out, err = distill(capsys, "nope")
  assert rc == 2 and "Traceback" not in err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "unknown command 'nope'" in lines[0] and "train" in lines[0]
  rc, out, err = distill(capsys, "--help")
  assert rc == 0 and out.strip() == cli.USAGE.strip() and err == ""
  rc, out, err = distill(capsys, "exprot")
  assert rc == 2 and "did you mean 'export'?" in err


@pytest.mark.parametrize("command", ["train", "export", "sample", "eval", "pairs", "boss", "fid", "fid stats",
                                     "fid convert-weights", "train-classifier", "lpips-weights", "quickstart"])
def test_every_subcommand_help_lists_each_flag_on_one_line(capsys, command):
  """`distill COMMAND --help`: a summary line, then one line per flag that the command accepts."""
  rc, out, err = distill(capsys, *command.split(), "--help")
  assert rc == 0 and err == "", err
  lines = out.strip().splitlines()
  assert lines[0].startswith(f"distill {command}: ") and lines[2] == "flags:"
  flag_lines = [line for line in lines[3:] if not line.lstrip().startswith("--config.")]
  names = [line.split()[0] for line in flag_lines]
  assert all(n.startswith("--") for n in names) and len(set(names)) == len(names) >= 2
  assert set(HELP_FLAGS[command]) <= set(names), names


HELP_FLAGS = {"train": ["--config", "--workdir", "--overwrite", "--coordinator"],
              "export": ["--workdir", "--out", "--step", "--best", "--stablehlo"],
              "sample": ["--sampler", "--num", "--out", "--steps", "--seed", "--labels"],
              "eval": ["--workdir", "--sampler", "--data", "--solver", "--features", "--straightness"],
              "pairs": ["--teacher", "--teacher_workdir", "--out", "--num", "--solver", "--rtol"],
              "boss": ["--sampler", "--steps", "--out", "--bundle_out"],
              "fid": ["--sampler", "--workdir", "--samples", "--features", "--ref", "--save_samples"],
              "fid stats": ["--data", "--out", "--features", "--keep"], "fid convert-weights": ["--pth", "--out"],
              "train-classifier": ["--data", "--out", "--steps", "--holdout"],
              "lpips-weights": ["--vgg", "--lin", "--out"], "quickstart": ["--workdir", "--data"]}


def test_progress_prints_to_the_current_stdout(capsys):
  """Progress lines go to sys.stdout as it is when printing (redirected in notebooks, tests, in-process calls)."""
  reporting.Progress(10, 0, 4).report(5, {"model/loss": 1.0})
  assert "step 5/10 (50%) | model/loss 1 |" in capsys.readouterr().out


def _run(cmd, **kw):
  return subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True, timeout=300, **kw)


def test_contract_commands_end_to_end(tmp_path):
  env = dict(os.environ, DISTILL_COMPILATION_CACHE=TEST_CACHE)
  points = np.random.default_rng(0).normal(size=(1000, 2)) * [1.0, 0.3] + [0.5, -1.0]
  npz = tmp_path / "P.npz"
  np.savez(npz, points=points)
  workdir, bundle, samples_npz, rows_json = tmp_path / "W", tmp_path / "B", tmp_path / "S.npz", tmp_path / "J.json"

  r = _run([DISTILL, "train", "--config", "configs/toy2d_teacher.py", "--workdir", workdir,
            f"--config.data.source=npz:{npz}", "--config.train.num_steps=30", "--config.train.eval_every=0"], env=env)
  assert r.returncode == 0, r.stdout + r.stderr
  assert "trained to step 30" in r.stdout
  assert "oneDNN" not in r.stderr and "InitializeLog" not in r.stderr, r.stderr  # no TensorFlow banners
  r = _run([DISTILL, "export", "--workdir", workdir, "--out", bundle, "--stablehlo"], env=env)
  assert r.returncode == 0, r.stdout + r.stderr
  assert os.path.isfile(bundle / "sampler.json")
  default_steps = json.load(open(bundle / "sampler.json"))["default_steps"]
  for k in (1, default_steps):  # the contract's files; tests/test_stablehlo.py samples them without the project
    assert os.path.getsize(bundle / "stablehlo" / f"steps_{k}.bin") > 0

  # sample, eval and a plain Python import of the bundle, concurrently.
  code = ("import samplers, jax; s = samplers.load(%r); print(s.sample(jax.random.key(0), 40, steps=10).shape)"
          % str(bundle))
  cmds = {"sample": [DISTILL, "sample", "--sampler", bundle, "--num", 100, "--out", samples_npz, "--steps", 5,
                     "--seed", 3],
          "eval": [DISTILL, "eval", "--sampler", bundle, "--num", 200, "--steps", "2,4", "--json", rows_json],
          "python": [sys.executable, "-c", code]}
  procs = {k: subprocess.Popen([str(c) for c in v], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for k, v in cmds.items()}
  results = {k: p.communicate(timeout=300) + (p.returncode,) for k, p in procs.items()}
  for k, (out, err, rc) in results.items():
    assert rc == 0, f"{k}: {out}{err}"
  assert results["python"][0].strip().splitlines()[-1] == "(40, 2)"

  s = samplers.load(str(bundle))
  with np.load(samples_npz) as f:
    assert f.files == ["samples"]
    x = f["samples"]
  assert x.shape == (100, 2) and x.dtype == np.float32
  np.testing.assert_array_equal(x, s.sample(jax.random.key(3), 100, steps=5))  # same seed, same 8 devices

  rows = json.load(open(rows_json))
  assert [r["steps"] for r in rows] == [2, 4] and [r["nfe"] for r in rows] == [2, 4]
  source = data_lib.make_source(f"npz:{npz}", 0)
  fresh_a, fresh_b = source.sample(200, seed=1000)["x"], source.sample(200, seed=2000)["x"]
  floor = energy_distance(fresh_a, fresh_b)
  for r in rows:
    assert {"energy", "energy_floor", "sw2", "sw2_floor"} <= set(r)
    assert np.isfinite(r["energy"]) and r["energy"] >= 0
    assert r["energy_floor"] == pytest.approx(floor, rel=1e-12)
    assert r["energy"] == pytest.approx(energy_distance(s.sample(jax.random.key(0), 200, steps=r["steps"]), fresh_a),
                                        rel=1e-6)

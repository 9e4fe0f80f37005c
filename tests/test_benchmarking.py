"""Benchmark helpers: the shared flags, the `--teacher_steps` row specification and the sample-set spread."""

import argparse
import importlib.util
import os

import pytest

from distill import benchmarking

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_teacher_rows_name_steps_with_an_optional_solver():
  parser = argparse.ArgumentParser()
  benchmarking.add_classifier_fid_flags(parser, teacher_steps="8,16")
  args = parser.parse_args(["--teacher_steps", "16, 50,heun:50,rk45:100"])
  assert args.rate_num == 256 and args.num == 2000
  assert benchmarking.parse_teacher_rows(parser.parse_args([]).teacher_steps) == [(None, 8), (None, 16)]
  assert benchmarking.parse_teacher_rows(args.teacher_steps) == [(None, 16), (None, 50), ("heun", 50), ("rk45", 100)]
  for bad in ("heun", "heun:", "0", "euler:-2", "16,,50"):
    with pytest.raises(SystemExit, match="--teacher_steps"):
      benchmarking.parse_teacher_rows(bad)


def _load_script(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_sample_seed_spread_pairs_each_student_with_the_teacher_set_by_set():
  bench = _load_script("benchmark_score_mnist")
  row = lambda fid: {"fid": fid, "solver": "heun", "steps": 50}
  spread = bench.sample_seed_spread({"a": [row(1.0), row(3.0)], "b": [row(5.0), row(5.0)]}, [row(2.0), row(4.0)])
  assert spread["teacher"] == {"solver": "heun", "steps": 50, "fids": [2.0, 4.0], "mean": 3.0,
                               "std": pytest.approx(2 ** 0.5)}
  assert spread["students"]["a"]["minus_teacher"] == {"diffs": [-1.0, -1.0], "mean": -1.0, "std": 0.0, "sets_below": 2}
  assert spread["students"]["b"]["minus_teacher"]["diffs"] == [3.0, 1.0]
  assert spread["students"]["b"]["minus_teacher"]["sets_below"] == 0
  assert spread["over_students"] == {"mean": 3.5, "std": pytest.approx(4.5 ** 0.5)}
  assert "| a | 2.00 | 1.41 | 1.00, 3.00 | -1.00 (0.00) | 2 of 2 |" in bench.spread_lines(spread)
  alone = bench.sample_seed_spread({"a": [row(1.0)]}, None)
  assert alone["teacher"] is None and "minus_teacher" not in alone["students"]["a"]
  assert alone["students"]["a"]["std"] is None


def test_results_document_gets_one_dated_section_per_run(tmp_path):
  """write_report appends each run to the results document with its date, commit, machine and command."""
  doc = tmp_path / "results" / "toy.md"
  machine = {"device_kind": "cpu", "devices": 8, "backend": "cpu", "cpu_count": 2, "jax": "0.10.2"}
  for value in (1.5, 2.5):
    benchmarking.write_report(str(tmp_path / "out"), "toy_bench", {"machine": machine, "value": value},
                              ["| value |", "|---|", f"| {value} |"], results=str(doc))
  text = doc.read_text()
  assert text.startswith("# Results: toy\n") and text.count("# Results") == 1
  sections = text.split("\n## ")[1:]
  assert len(sections) == 2
  for section, value in zip(sections, (1.5, 2.5)):
    assert section.startswith("toy_bench, 20") and f"| {value} |" in section
    assert "- commit: `" in section and "- Machine: cpu x8 (cpu), 2 CPU cores, jax 0.10.2" in section
    assert "- command: `python " in section
  assert benchmarking.git_commit() not in ("", "unknown")  # the tests run from the repository's checkout
  assert (tmp_path / "out" / "toy_bench.json").exists() and (tmp_path / "out" / "toy_bench.md").exists()


@pytest.mark.parametrize("name", sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "scripts"))
                                        if f.startswith(("benchmark_", "diagnose_")) and f.endswith(".py")))
def test_every_benchmark_script_loads_and_parses_its_flags(name, monkeypatch, capsys):
  """Each benchmark script imports and its argument parser answers --help (a typo in a script fails here, not after
  an hour of benchmarking)."""
  module = _load_script(name)
  monkeypatch.setattr("sys.argv", [name, "--help"])
  with pytest.raises(SystemExit) as exit_info:
    module.parse() if hasattr(module, "parse") else module.main()
  assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


def test_run_ledger_keeps_finished_runs_across_instances(tmp_path):
  path = str(tmp_path / "runs" / "sweep.json")
  ledger = benchmarking.RunLedger(path)
  assert ledger.get("a/seed0") is None
  ledger.put("a/seed0", {"energy": 1.5e-4})
  ledger.put("a/seed1", {"energy": 2.0e-4})
  reread = benchmarking.RunLedger(path)  # a later session, on a fresh checkout holding the committed file
  assert reread.get("a/seed0") == {"energy": 1.5e-4} and reread.get("a/seed1") == {"energy": 2.0e-4}
  assert reread.commits(["a/seed0", "a/seed1", "missing"]) == [benchmarking.git_commit()]
  assert os.listdir(tmp_path / "runs") == ["sweep.json"]  # written atomically: no temporary file left behind
  unrecorded = benchmarking.RunLedger("")
  unrecorded.put("a/seed0", {"energy": 1.0})
  assert unrecorded.get("a/seed0") == {"energy": 1.0} and not os.path.exists("")

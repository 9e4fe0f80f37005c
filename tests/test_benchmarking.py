"""Benchmark helpers: the shared flags and the `--teacher_steps` row specification."""

import argparse

import pytest

from distill import benchmarking


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

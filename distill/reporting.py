"""What a user sees during training: clu metric writers (TensorBoard + log), a metrics JSON-lines file, and a
one-line progress report with rate and ETA on stdout (clu's ReportProgress also logs steps/s to the writers).
Only process 0 writes files."""

from __future__ import annotations

import json
import os
import sys
import time

import jax
from clu import metric_writers

METRICS_FILE = "metrics.jsonl"


class JsonlWriter(metric_writers.MetricWriter):
  """Appends {"step": s, name: value, ...} lines to workdir/metrics.jsonl."""

  def __init__(self, path: str):
    self._path = path

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_scalars(self, step, scalars):
    with open(self._path, "a") as f:
      f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def create_writers(workdir: str) -> tuple[metric_writers.MetricWriter, metric_writers.MetricWriter]:
  """(metrics writer, progress writer). Metrics go to TensorBoard events + absl logging (clu's default writer) and
  metrics.jsonl; clu's ReportProgress (steps/s, uptime) goes to the default writer only. Files on process 0 only."""
  if jax.process_index() > 0:
    default = metric_writers.create_default_writer(workdir, just_logging=True, asynchronous=False)
    return default, default
  default = metric_writers.create_default_writer(workdir, asynchronous=False)
  return metric_writers.MultiWriter([default, JsonlWriter(os.path.join(workdir, METRICS_FILE))]), default


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Progress:
  """Prints `step 200/2000 (10%) | a/loss 0.1234 | 45.1 steps/s, 11.5k items/s | ETA 0:00:40` lines."""

  def __init__(self, num_steps: int, start_step: int, batch_size: int, stream=None):
    self.num_steps, self.batch_size, self.stream = num_steps, batch_size, stream
    self._t, self._step = time.time(), start_step

  def report(self, step: int, scalars: dict) -> None:
    now = time.time()
    rate = (step - self._step) / max(now - self._t, 1e-9)
    self._t, self._step = now, step
    eta = int((self.num_steps - step) / rate) if rate > 0 else 0
    shown = " | ".join(f"{k} {v:.4g}" for k, v in scalars.items() if k.endswith("loss"))
    if jax.process_index() == 0:
      print(f"step {step}/{self.num_steps} ({100 * step // max(self.num_steps, 1)}%) | {shown} | "
            f"{rate:.2f} steps/s, {rate * self.batch_size:.0f} items/s | "
            f"ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}", file=self.stream or sys.stdout, flush=True)

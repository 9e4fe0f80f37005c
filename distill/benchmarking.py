"""What every benchmark script records: the machine it ran on, and its figures as JSON plus a markdown table."""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time


def machine_info() -> dict:
  import jax

  device = jax.devices()[0]
  return {"platform": platform.platform(), "python": sys.version.split()[0], "jax": jax.__version__,
          "backend": jax.default_backend(), "device_kind": device.device_kind, "devices": jax.device_count(),
          "cpu_count": os.cpu_count()}


def machine_line(machine: dict) -> str:
  return (f"Machine: {machine['device_kind']} x{machine['devices']} ({machine['backend']}), {machine['cpu_count']} "
          f"CPU cores, jax {machine['jax']}")


def sampling_rate(sampler, steps: int, num: int = 20_000) -> float:
  """Samples per second of an exported sampler after compilation (one warm-up call)."""
  import jax

  sampler.sample(jax.random.key(0), num, steps=steps)
  start = time.perf_counter()
  sampler.sample(jax.random.key(1), num, steps=steps)
  return num / (time.perf_counter() - start)


def time_training_steps(trainer, source, mesh, batch_size: int, steps: int):
  """(state, seconds per step) of `steps` jitted training steps from a fresh state, after compilation and three
  warm-up steps, cycling over four batches of `source`."""
  import jax

  from distill import sharding

  state, teacher_params = trainer.init_state(), trainer.teacher_params()
  batches = [sharding.global_batch(source.global_batch(i, batch_size), mesh) for i in range(4)]
  for i in range(3):
    state, _ = trainer.step(state, teacher_params, batches[i % 4])
  jax.block_until_ready(state)
  start = time.perf_counter()
  for i in range(steps):
    state, _ = trainer.step(state, teacher_params, batches[i % 4])
  jax.block_until_ready(state)
  return state, (time.perf_counter() - start) / steps


def training_step_seconds(config, steps: int = 50) -> float:
  """Seconds per training step of a complete train config (a workdir's config.json: its data, teacher, objective
  and mesh), timed as time_training_steps does."""
  from distill import run

  built = run.build_run(config)
  return time_training_steps(built.trainer, built.source, built.mesh, config.data.batch_size, steps)[1]


def stage_step_seconds(workdir: str) -> float:
  """Seconds per training step of a train workdir's config (training_step_seconds), cached in
  WORKDIR/step_seconds.json."""
  import ml_collections

  from distill import checkpointing

  cache = os.path.join(workdir, "step_seconds.json")
  try:
    with open(cache) as f:
      return float(json.load(f)["seconds"])
  except (OSError, ValueError, KeyError):  # absent, or left empty by an interrupted run: time it (again)
    pass
  seconds = training_step_seconds(ml_collections.ConfigDict(checkpointing.read_config(workdir)))
  with open(cache + ".tmp", "w") as f:
    json.dump({"seconds": seconds}, f)
  os.replace(cache + ".tmp", cache)
  return seconds


def pipeline_training_seconds(workdir: str) -> float:
  """A pipeline's training cost in seconds: per train stage its steps x seconds per step, plus pairs stages' wall
  clock, from WORKDIR/pipeline.json (an external teacher costs nothing here)."""
  with open(os.path.join(workdir, "pipeline.json")) as f:
    records = json.load(f)
  total = 0.0
  for record in records.values():
    if record.get("kind") == "train":
      total += record["steps"] * stage_step_seconds(record["workdir"])
    elif record.get("kind") == "pairs":
      total += record.get("seconds", 0.0)
  return total


def energy_over_sets(sampler, source: str, num: int, steps: int, seeds) -> dict:
  """A 2-D model's energy distance and SW2 to fresh data of `source` (and the data-vs-data floors): mean and sample
  standard deviation over one sample set of `num` points per seed, plus the per-set energies for paired ratios."""
  import numpy as np

  from distill import api

  rows = [api.evaluate(sampler, source, num, [steps], seed=seed)[0] for seed in seeds]
  out = {"steps": steps, "nfe": rows[0]["nfe"]}
  for key in ("energy", "energy_floor", "sw2", "sw2_floor"):
    values = np.array([r[key] for r in rows])
    out[key], out[f"{key}_std"] = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
  out["energy_per_set"] = [r["energy"] for r in rows]
  return out


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_report(out_dir: str, name: str, result: dict, markdown_lines: list[str], results: str = "") -> None:
  """Write out_dir/name.json and out_dir/name.md, print the markdown, and append it as a dated section to the results
  document `results` (docs/results/<family>.md; '' for none)."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write("\n".join(markdown_lines) + "\n")
  print("\n".join(markdown_lines))
  if results:
    append_results(results, name, markdown_lines, result.get("machine") or machine_info())
    print(f"appended to {results}")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "docs", "results")


def add_results_flag(parser, family: str) -> None:
  """--results: the results document a run appends its section to (docs/results/<family>.md by default)."""
  parser.add_argument("--results", default=os.path.join(RESULTS_DIR, f"{family}.md"),
                      help="results document to append this run to, with date, commit, machine and command "
                      "('' to skip)")


def git_commit(ignore: tuple[str, ...] = ()) -> str:
  """The checkout's short commit hash, with '+changes' when tracked files other than `ignore` (absolute paths)
  differ from it; 'unknown' outside git."""
  try:
    run = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    ignored = [f":(exclude){os.path.relpath(p, REPO)}" for p in ignore if p.startswith(REPO + os.sep)]
    changed = run("status", "--porcelain", "--untracked-files=no", "--", ".", *ignored)
    return run("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def append_results(path: str, name: str, markdown_lines: list[str], machine: dict, argv=None) -> None:
  """Append one run to a results document: a heading with the benchmark and date, the commit, the machine and the
  exact command, then the run's own markdown."""
  command = " ".join(shlex.quote(a) for a in (argv if argv is not None else ["python", *sys.argv]))
  section = [f"## {name}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"- commit: `{git_commit()}`", f"- {machine_line(machine)}", f"- command: `{command}`", "",
             *markdown_lines, ""]
  new = not os.path.exists(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a") as f:
    if new:
      f.write(f"# Results: {os.path.splitext(os.path.basename(path))[0].replace('_', ' ')}\n\n"
              "Each section is one benchmark run, appended by the script that ran it.\n\n")
    f.write("\n".join(section) + "\n")


class RunLedger:
  """The scores of an expensive sweep's finished runs, kept in a small JSON file under docs/results/runs (committed,
  unlike the runs' workdirs), so a sweep longer than one session accumulates across fresh checkouts.

  key -> {"scores": ..., "commit": ..., "date": ...}; keys name everything the scores depend on (variant, data,
  method, seed, sample sizes). Written atomically after every run, so an interrupted sweep loses at most one run."""

  def __init__(self, path: str):
    self.path = path
    self.entries = json.load(open(path)) if path and os.path.exists(path) else {}

  def get(self, key: str):
    """The scores recorded under `key`, or None."""
    entry = self.entries.get(key)
    return entry["scores"] if entry else None

  def put(self, key: str, scores) -> None:
    """Record `scores` under `key` with the commit and date (in memory only without a path)."""
    commit = git_commit(ignore=(os.path.abspath(self.path),) if self.path else ())  # the ledger's own edits aside
    self.entries[key] = {"scores": scores, "commit": commit,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not self.path:
      return
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    tmp = f"{self.path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(self.entries, f, indent=1, sort_keys=True)
    os.replace(tmp, self.path)

  def commits(self, keys) -> list[str]:
    """The distinct commits the entries under `keys` were measured at, in first-seen order."""
    return list(dict.fromkeys(self.entries[k]["commit"] for k in keys if k in self.entries))


def add_classifier_fid_flags(parser, teacher_steps: str) -> None:
  """The flags every ClassifierFIDBench script shares (output, data, classifier, sizes, teacher step counts)."""
  parser.add_argument("--out", default="bench_out")
  parser.add_argument("--data", default="npz:../shared/data/mnist10k.npz")
  parser.add_argument("--classifier", default="runs/mnist_classifier")
  parser.add_argument("--num", type=int, default=2000, help="samples per row and images per data half")
  parser.add_argument("--teacher_steps", default=teacher_steps,
                      help="teacher rows: step counts with the bundle's solver (Euler), or solver:steps for another "
                      "solver, e.g. 16,50,100,heun:50,rk45:100 (rk45 is adaptive: steps only set its last noise level)")
  parser.add_argument("--rate_num", type=int, default=256, help="batch size of the throughput measurements")


def parse_teacher_rows(spec: str) -> list[tuple[str | None, int]]:
  """`--teacher_steps` -> [(solver or None for the bundle's own, steps)]: "16,heun:50" -> [(None, 16), ("heun", 50)]."""
  rows = []
  for item in spec.split(","):
    solver, _, steps = item.strip().rpartition(":")
    if not steps.isdigit() or int(steps) < 1:
      raise SystemExit(f"--teacher_steps: {item!r} is not STEPS or SOLVER:STEPS with STEPS a positive integer")
    rows.append((solver or None, int(steps)))
  return rows


class ClassifierFIDBench:
  """FID in a feature classifier's space for image benchmarks, with finished rows cached on disk.

  The data are split at random (seed 0) into two disjoint halves A and B of `num` images: the reference statistics
  come from A, the data-vs-data floor is B against A, and each model is scored with `num` samples against A. Rows
  are cached in `cache_path` under (model name, steps, num, parameter checksum), so an interrupted benchmark
  continues and a retrained model is scored again.
  """

  def __init__(self, data: str, classifier: str, num: int, cache_path: str):
    import numpy as np

    from distill.evaluation import features as features_lib, fid

    self.data, self.num, self.cache_path = data, num, cache_path
    self.extractor = features_lib.classifier_features(classifier)
    images, labels = next(iter(fid.source_stream(data, chunk=10**9)))
    order = np.random.default_rng(0).permutation(len(images))
    half_a, half_b = order[:num], order[num:2 * num]
    self.reference = fid.compute_statistics(self.extractor, [(images[half_a], labels[half_a])], "half A")
    self.floor = fid.compare(fid.compute_statistics(self.extractor, [(images[half_b], labels[half_b])], "half B"),
                             self.reference)
    self.cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}

  def row(self, name: str, sampler, steps: int, plot_dir: str, solver: str | None = None, seed: int = 0) -> dict:
    """{model, params, steps, solver, nfe, seconds, fid, precision, recall, kid[, class_accuracy]} of `sampler` at
    `steps`, with its own solver or `solver` instead (then keyed and plotted apart), from the noise of sample seed
    `seed` (rows of other seeds than 0 are keyed apart and not plotted)."""
    from distill import api

    key = f"{name}|{steps}|{self.num}|{sampler.meta['checksum']}"
    if solver:
      sampler, key, plot_dir = sampler.with_sampler(solver=solver), f"{key}|{solver}", f"{plot_dir}_{solver}"
    if seed:
      key, plot_dir = f"{key}|seed{seed}", None
    if key not in self.cache:
      row = api.evaluate(sampler, self.data, self.num, [steps], seed=seed, extractor=self.extractor,
                                 reference=self.reference, plot_dir=plot_dir)[0]
      self.cache[key] = dict(model=name, params=sampler.network.num_params(), **row)
      with open(self.cache_path + ".tmp", "w") as f:
        json.dump(self.cache, f, indent=1)
      os.replace(self.cache_path + ".tmp", self.cache_path)
      print(f"{name} {steps} steps ({row['solver']}, sample seed {seed}): FID {row['fid']:.2f}", flush=True)
    return {"solver": sampler.meta["sampler"]["solver"], **self.cache[key]}  # rows cached before `solver` existed

  def floor_line(self, classifier: str) -> str:
    f = self.floor
    return (f"FID in the feature classifier's space ({classifier}), {self.num} samples against half A of {self.data}; "
            f"data floor (half B vs A): FID {f['fid']:.2f}, precision {f['precision']:.3f}, recall {f['recall']:.3f}.")


def fid_table(rows: list[dict]) -> list[str]:
  """Markdown table of ClassifierFIDBench rows."""
  lines = ["| model | params | solver | steps | NFE | FID | precision | recall | KID | class acc. |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    acc = f"{r['class_accuracy']:.3f}" if "class_accuracy" in r else "-"
    lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['solver']} | {r['steps']} | {r['nfe']} | "
                 f"{r['fid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['kid']:.4f} | {acc} |")
  return lines


def one_step_summary(rows: list[dict], loaded: dict, students, rate_num: int) -> tuple[dict, list[str]]:
  """Each one-step student against the teacher at its best NFE (lowest FID among the 'teacher' rows) and at its
  default NFE: FID ratio, sampling speed-up (samples/s at batch `rate_num`, measured here back to back) and size.
  `loaded` maps model names (including 'teacher') to samplers. Returns (summary dict, markdown lines)."""

  best = min((r for r in rows if r["model"] == "teacher"), key=lambda r: r["fid"])
  teacher = loaded["teacher"]
  default_steps, default_solver = int(teacher.meta["sampler"]["steps"]), teacher.meta["sampler"]["solver"]
  is_default = (best["steps"], best["solver"]) == (default_steps, default_solver)
  rates = {"teacher_best": sampling_rate(teacher.with_sampler(solver=best["solver"]), best["steps"], rate_num)}
  rates["teacher_default"] = rates["teacher_best"] if is_default else sampling_rate(teacher, default_steps, rate_num)
  rates |= {name: sampling_rate(loaded[name], 1, rate_num) for name in students}
  summary = {"teacher_best": {"solver": best["solver"], "steps": best["steps"], "nfe": best["nfe"], "fid": best["fid"]},
             "teacher_default_steps": default_steps, "samples_per_s": rates, "students": {}}
  lines = [f"Teacher best: {best['solver']}, {best['steps']} steps ({best['nfe']} NFE), FID {best['fid']:.2f}; default "
           f"{default_solver}, {default_steps} steps.", "",
           "| one-step model | FID | FID / teacher best | samples/s | speed-up vs teacher best NFE | vs default NFE | "
           "params / teacher |", "|---|---|---|---|---|---|---|"]
  for name in students:
    r = next(r for r in rows if r["model"] == name)
    s = summary["students"][name] = {
        "fid": r["fid"], "fid_over_teacher_best": r["fid"] / best["fid"],
        "speedup_vs_teacher_best": rates[name] / rates["teacher_best"],
        "speedup_vs_teacher_default": rates[name] / rates["teacher_default"],
        "params_over_teacher": r["params"] / best["params"]}
    lines.append(f"| {name} | {r['fid']:.2f} | {s['fid_over_teacher_best']:.2f}x | {rates[name]:.0f} | "
                 f"{s['speedup_vs_teacher_best']:.1f}x | {s['speedup_vs_teacher_default']:.1f}x | "
                 f"{s['params_over_teacher']:.2f} |")
  teacher_rates = f"{rates['teacher_best']:.1f} at its best ({best['nfe']} NFE)"
  if not is_default:
    teacher_rates += f", {rates['teacher_default']:.1f} at its default ({default_steps} steps)"
  lines += ["", f"Teacher samples/s: {teacher_rates}."]
  return summary, lines

"""The host-side training run: config -> data, teacher, objective, sharded state -> loop with logging, evaluation,
checkpoints and automatic resume. Everything here is outside jit; the step itself is distill/trainer.py."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from clu import periodic_actions

from distill import checkpointing, data as data_lib, objectives, pairs, partitions, reporting
from distill.partitioned_data import PartitionedSource
from distill import sharding as sharding_lib
from distill.errors import NonFiniteLossError, UserError
from distill.evaluation import save_image_grid, save_scatter, two_sample_report
from distill.images import to_uint8
from samplers.generator import Generator
from distill.teacher import load_teacher
from distill.trainer import Trainer, TrainState


@dataclasses.dataclass
class Run:
  """Everything a training run is made of (built once from the config)."""

  config: object
  mesh: object
  source: data_lib.DataSource
  objective: object
  trainer: Trainer
  generator: Generator
  eval_source: data_lib.DataSource  # what evaluations compare samples with


def sampler_config(config) -> dict:
  """config.sampler, except that a BOSS fine-tune samples (and is exported) with Euler on its Bellman grid."""
  if config.objective.name == "boss":
    from distill.boss import read_grid, sampler_config as bellman_sampler

    return {**config.sampler.to_dict(), **bellman_sampler(read_grid(config.objective.bellman_file))}
  return config.sampler.to_dict()


def partition(config, source):
  """(source, router): with config.multi_student.k > 0 the router fitted to `source` and the source laid out student
  by student (distill/partitioned_data.py); otherwise `source` unchanged and no router."""
  if not (config.get("multi_student") and config.multi_student.k > 0):
    return source, None
  router = partitions.fit_router(config.multi_student, source, config.seed)
  if config.data.batch_size % router.num_students:
    raise UserError(f"data.batch_size={config.data.batch_size} must be divisible by multi_student.k="
                    f"{router.num_students} (each student gets an equal block of the batch)")
  return PartitionedSource(source, router, config.seed,
                           full_set=config.multi_student.get("full_set", False)), router


def build_run(config) -> Run:
  if config.seed < 0:
    raise UserError(f"seed must be >= 0, got {config.seed} (-1 in a pipeline stage means the pipeline's "
                    "seed; train the pipeline config, not the stage config alone)")
  mesh = sharding_lib.make_mesh(config.mesh)
  source = data_lib.make_source(config.data.source, config.seed, flip=config.data.flip)
  teacher = load_teacher(config.teacher)
  if source.pair_metadata is not None and config.objective.name == "reflow":
    pairs.check_teacher(source.pair_metadata, teacher, config.data.source)
  source, router = partition(config, source)
  objective = objectives.build(config, source.spec, teacher, router=router)
  if config.data.batch_size % mesh.size:
    raise UserError(f"data.batch_size={config.data.batch_size} must be divisible by the {mesh.size} devices of the mesh")
  if hasattr(objective, "bundle_section") and (config.train.eval_every or config.eval.fid_every):
    raise UserError("in-training evaluation samples from noise; a restoration model (OFTSR) restores degraded "
                    "inputs instead: set train.eval_every=0 and eval.fid_every=0 and score it with `distill restore`")
  trainer = Trainer(objective, mesh, config.sharding.rules, config.ema, config.seed, teacher)
  network = objective.groups[objective.sample_group].network
  generator = Generator(network, source.spec.shape, sampler_config(config), mesh=mesh)  # the training devices
  reference = config.eval.get("reference", "")
  eval_source = data_lib.make_source(reference, config.seed) if reference else source
  return Run(config, mesh, source, objective, trainer, generator, eval_source)


def evaluate(run: Run, state: TrainState, step: int, outdir: str, num_samples: int, steps: int | None = None) -> dict:
  """Sample the EMA parameters of the sampled group; 2-D data: energy distance and sliced W2 against fresh data of
  `run.eval_source` (with the data-vs-data floor) and a scatter plot; images: a PNG grid. Returns the scalars."""
  params = state.ema[run.objective.sample_group]
  samples = run.generator.generate(params, jax.random.key(run.config.seed + 1), num_samples, steps)
  os.makedirs(outdir, exist_ok=True)
  if run.source.spec.kind == "images":
    path = os.path.join(outdir, f"samples_{step:07d}.png")
    save_image_grid(path, to_uint8(samples[:64]))
    return {"plot": path}
  fresh_a = run.eval_source.sample(num_samples, seed=10_000 + step)["x"]
  fresh_b = run.eval_source.sample(num_samples, seed=20_000 + step)["x"]
  report = two_sample_report(samples, fresh_a, fresh_b)
  path = os.path.join(outdir, f"samples_{step:07d}.png")
  if samples.shape[1] == 2:
    save_scatter(path, {"data": fresh_a, "samples": samples}, title=f"step {step}")
    report["plot"] = path
  return report


def _restore_or_init(run: Run, ckpts: checkpointing.Checkpoints) -> TrainState:
  latest = ckpts.latest_step()
  if latest is None:
    return run.trainer.init_state()
  print(f"resuming from checkpoint step {latest} in {ckpts.directory}", flush=True)
  return ckpts.restore(latest, run.trainer.abstract_sharded_state())


def _check_finite(state: TrainState, ckpts: checkpointing.Checkpoints) -> None:
  bad = int(jax.device_get(state.first_bad_step))
  if bad >= 0:
    ckpts.wait()
    raise NonFiniteLossError(
        f"non-finite loss or gradient at step {bad}; training stopped, last good checkpoint: step "
        f"{ckpts.latest_step()} in {ckpts.directory}")


def train(config, workdir: str, overwrite: bool = False) -> TrainState:
  """Train (or resume) the run described by `config` in `workdir`; returns the final state."""
  run = build_run(config)  # validates the config before anything is written to the workdir
  checkpointing.prepare_workdir(workdir, config.to_dict(), overwrite)
  tc = config.train
  ckpts = checkpointing.Checkpoints(workdir, tc.keep_last, tc.keep_every)
  state = _restore_or_init(run, ckpts)
  start = int(jax.device_get(state.step))
  teacher_params = run.trainer.teacher_params()
  writer, progress_writer = reporting.create_writers(workdir)
  progress = reporting.Progress(tc.num_steps, start, config.data.batch_size)
  report_progress = periodic_actions.ReportProgress(num_train_steps=tc.num_steps, writer=progress_writer,
                                                    every_steps=tc.log_every)
  training_eval = _training_evaluator(config)
  best = checkpointing.BestCheckpoint(workdir, training_eval.metric) if training_eval else None
  pending = []
  if start == 0:
    writer.write_hparams({"params/" + k: sum(int(x.size) for x in jax.tree.leaves(v))
                          for k, v in state.params.items()})
  try:
    for step in range(start, tc.num_steps):
      local = run.source.local_batch(step, config.data.batch_size, jax.process_index(), jax.process_count())
      state, metrics = run.trainer.step(state, teacher_params, sharding_lib.global_batch(local, run.mesh))
      if pending:  # at most two steps in flight: XLA:CPU's collectives can deadlock under a deep dispatch queue
        jax.block_until_ready(pending[-1])
      pending.append(metrics)
      done = step + 1
      report_progress(done)
      if done % tc.log_every == 0 or done == tc.num_steps:
        _check_finite(state, ckpts)
        host = jax.device_get(pending)
        scalars, histograms = _average(host), {k: v for k, v in host[-1].items() if np.ndim(v) > 0}
        pending = []
        progress.report(done, scalars)
        writer.write_scalars(done, scalars)
        if histograms:  # e.g. the discriminator pool's head ages
          writer.write_histograms(done, histograms)
      if tc.eval_every and (done % tc.eval_every == 0 or done == tc.num_steps):
        report = evaluate(run, state, done, os.path.join(workdir, "plots"), config.eval.num_samples)
        writer.write_scalars(done, {f"eval/{k}": v for k, v in report.items() if k != "plot"})
        shown = [f"{k} {v:.4g}" for k, v in report.items() if k != "plot"]
        shown += [f"plot {report['plot']}"] if "plot" in report else []
        print(f"eval step {done}: " + " | ".join(shown), flush=True)
      if training_eval and (done % config.eval.fid_every == 0 or done == tc.num_steps):
        _evaluate_and_keep_best(run, state, done, training_eval, best, writer)
      if done % tc.ckpt_every == 0 or done == tc.num_steps:
        _check_finite(state, ckpts)
        ckpts.save(done, state, config.to_dict())
  finally:
    ckpts.close()
    writer.flush()
  return state


def _training_evaluator(config):
  """The in-training evaluator of `config.eval` (reference computed once), or None when fid_every is 0: FID in
  `fid_features` space ('inception', 'classifier:<folder>') for images, energy distance ('energy') for points."""
  ec = config.eval
  if not ec.fid_every:
    return None
  if not ec.fid_features:
    raise UserError("eval.fid_every > 0 needs eval.fid_features (inception, classifier:<folder>, or energy for points)")
  if ec.fid_features == "energy":
    from distill.evaluation.distances import TrainingEnergy

    return TrainingEnergy(ec.fid_ref or config.data.source, ec.fid_num, ec.fid_steps or None)
  from distill.evaluation.fid import TrainingFID

  return TrainingFID(ec.fid_features, ec.fid_ref or config.data.source, ec.fid_num, ec.fid_steps or None)


def _evaluate_and_keep_best(run: Run, state: TrainState, step: int, evaluator, best, writer) -> None:
  """Evaluate the EMA parameters (same noise every time), log eval/*, checkpoint a new best of evaluator.metric once
  the objective's warm-up is over (before it, the model is not yet the method's)."""
  metrics = evaluator(run.generator, state.ema[run.objective.sample_group], jax.random.key(run.config.seed + 2))
  scalars = {k: metrics[k] for k in ("fid", "precision", "recall", "kid", "energy", "sw2") if k in metrics}
  writer.write_scalars(step, {f"eval/{k}": v for k, v in scalars.items()})
  warmup = getattr(run.objective, "warmup_steps", 0)
  improved = step >= warmup and best.offer(step, metrics[evaluator.metric], state, run.config.to_dict())
  if step < warmup:
    status = f" (warm-up until step {warmup}: not a best candidate)"
  else:
    status = " (new best, saved)" if improved else f" (best {best.value:.4g} at step {best.step})"
  shown = " | ".join(f"{k} {v:.4g}" for k, v in scalars.items())
  print(f"{evaluator.metric} step {step}: {shown}{status}", flush=True)


def _average(metrics: list[dict]) -> dict:
  """Mean of each scalar metric over the steps in which its group was updated (groups may skip steps); array metrics
  (histograms) are left out."""
  out = {}
  keys = metrics[0].keys()
  for key in keys:
    if key.endswith("/updated") or np.ndim(metrics[0][key]) > 0:
      continue
    group = key.split("/")[0]
    weights = np.array([m.get(f"{group}/updated", 1.0) for m in metrics])
    values = np.array([m[key] for m in metrics], np.float64)
    if weights.sum() > 0:
      out[key] = float((values * weights).sum() / weights.sum())
  return out

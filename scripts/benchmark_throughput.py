"""Training and sampling throughput of the 2-D MLP and the MNIST U-Net (float32 and bfloat16 compute), the cost of a
SiD update against a teacher training step, optionally the CIFAR-10 U-Net, plus peak memory.

  python scripts/benchmark_throughput.py --out bench_out [--mnist ../shared/data/mnist10k.npz] [--devices 1] \
      [--cifar] [--bf16=false]

Writes bench_out/throughput.json and bench_out/throughput.md. Training: steps/s and items/s of the jitted step
(compile excluded, measured over --steps steps after a warm-up); "x teacher" is a row's step time over the teacher
training step of the same network and dtype (for SiD: one fake-score plus one generator update, three networks; for
the discriminator pool: one pool update plus one student update, configs/mnist_nitro.py, and SiD with the pool,
configs/mnist_sid_pool.py; their "<group> gradient only" rows time each group's loss gradient alone, forward and
backward without the optimizer, so the generator's and the pool's halves of a step show separately). Multi-student
SiD (configs/mnist_msd.py: K = 5 students of 8 rows each, class blocks, a class-conditional teacher) in each
multi_student.layout, against one SiD student on the same 40 rows ("x teacher" here: over that single student's step).
Sampling: samples/s and network evaluations per second (samples x NFE / s) for an Euler sampler. Memory: per
training row, XLA's account of one compiled step (arguments + outputs + temporaries - donated aliases); the
process's peak RSS, and the device's peak bytes where the backend reports it (GPU/TPU). bfloat16 rows set
model.compute_dtype=bfloat16 (float32 parameters and preconditioning); on CPUs without bf16 units they are slower.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def parse():
  from distill import benchmarking

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--mnist", default="", help="npz with MNIST images (default: random 28x28 images)")
  p.add_argument("--devices", type=int, default=1, help="fake CPU devices (CPU only; 1 = plain)")
  p.add_argument("--steps", type=int, default=50, help="timed training steps per model")
  p.add_argument("--bf16", default="true", choices=["true", "false"], help="also time bfloat16 compute")
  p.add_argument("--cifar", action="store_true", help="also time the CIFAR-10 U-Net (56M parameters; GPU scale)")
  p.add_argument("--cifar_batch", type=int, default=128)
  benchmarking.add_results_flag(p, "throughput")
  return p.parse_args()


def main():
  args = parse()
  if args.devices > 1:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  import jax
  import numpy as np

  from configs import cifar10_teacher, mnist_msd, mnist_nitro, mnist_score, mnist_sid_pool, mnist_teacher, toy2d_teacher
  from distill import benchmarking, data as data_lib
  from distill import objectives, run, sharding
  from distill.objectives.multi_student import LAYOUTS
  from samplers.generator import Generator
  from distill.teacher import Teacher
  from distill.trainer import Trainer

  def time_training(config, steps, teacher=None, per_group=False):
    """(state, network, source, row) of `steps` timed trainer steps; with per_group, row['group_seconds'] holds the
    seconds per gradient of each group's loss alone (forward + backward, no optimizer) on the same state."""
    mesh = sharding.make_mesh(config.mesh)
    source, router = run.partition(config, data_lib.make_source(config.data.source, 0))
    objective = objectives.build(config, source.spec, teacher, router=router)
    trainer = Trainer(objective, mesh, config.sharding.rules, config.ema, 0, teacher)
    state, seconds = benchmarking.time_training_steps(trainer, source, mesh, config.data.batch_size, steps)
    elapsed = seconds * steps
    teacher_params = trainer.teacher_params()
    batches = [sharding.global_batch(source.global_batch(0, config.data.batch_size), mesh)]
    network = objective.groups[objective.sample_group].network
    compiled = trainer.step.lower(state, teacher_params, batches[0]).compile()
    row = {"params": network.num_params(), "batch_size": config.data.batch_size,
           "steps_per_sec": steps / elapsed, "items_per_sec": steps * config.data.batch_size / elapsed,
           "step_memory_mib": step_memory_mib(compiled)}
    if per_group:
      row["group_seconds"] = {name: time_gradient(objective, name, state, teacher_params, batches[0], steps)
                              for name in objective.groups}
    return state, network, source, row

  def step_memory_mib(compiled):
    """XLA's own account of one compiled step: arguments + outputs + temporaries, less donated aliases (MiB)."""
    m = compiled.memory_analysis()
    if m is None:
      return float("nan")
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return total / 2**20

  def time_gradient(objective, name, state, teacher_params, batch, steps):
    """Seconds per gradient of group `name`'s loss alone, e.g. the generator's or the pool's half of a pool step."""
    @jax.jit
    def grad(params, aux, teacher_params, batch, rng):
      loss = lambda p: objective.loss(name, {**params, name: p}, aux, teacher_params, batch, rng, state.step)[0]
      return jax.grad(loss)(params[name])

    args = (state.params, state.aux, teacher_params, batch, jax.random.key(0))
    jax.block_until_ready(grad(*args))
    start = time.perf_counter()
    for _ in range(steps):
      g = grad(*args)
    jax.block_until_ready(g)
    return (time.perf_counter() - start) / steps

  def random_images(name, shape, num=512):
    path = os.path.join(args.out, f"random_{name}.npz")
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (num, *shape), dtype=np.uint8), labels=np.arange(num) % 10)
    return f"npz:{path}"

  dtypes = ["float32", "bfloat16"] if args.bf16 == "true" else ["float32"]
  suffix = lambda dtype: "" if dtype == "float32" else "_bf16"

  def time_unet(name, config, steps):
    """A teacher-training row per compute dtype; returns {dtype: (state, network, source)}."""
    out = {}
    for dtype in dtypes:
      config.model.compute_dtype = dtype
      state, net, source, row = time_training(config, steps)
      record(f"{name}_train{suffix(dtype)}", row | {"x_teacher": 1.0})
      out[dtype] = state, net, source
    config.model.compute_dtype = "float32"
    return out

  def time_sampling(network, params, shape, sampler_config, num):
    gen = Generator(network, shape, sampler_config, batch_size=num)
    gen.generate(params, jax.random.key(0), num)  # compile
    start = time.perf_counter()
    gen.generate(params, jax.random.key(1), num)
    elapsed = time.perf_counter() - start
    nfe = gen.nfe()
    return {"num": num, "nfe": nfe, "samples_per_sec": num / elapsed, "evals_per_sec": num * nfe / elapsed}

  rows = {}

  def record(name, row):  # printed as measured, so a run cut short still reports what it finished
    rows[name] = row
    print(name, json.dumps(row), flush=True)

  toy = toy2d_teacher.get_config()
  toy.data.source = "toy:checkerboard"
  state, net, source, row = time_training(toy, args.steps * 4)
  record("mlp_2d_train", row)
  record("mlp_2d_sample", time_sampling(net, state.ema["model"], source.spec.shape, toy.sampler.to_dict(), 8192))

  mnist = mnist_teacher.get_config()
  mnist.data.source = f"npz:{args.mnist}" if args.mnist else random_images("mnist", (28, 28))
  trained = time_unet("unet_mnist", mnist, args.steps)
  state, net, source = trained["float32"]
  sampler = mnist.sampler.to_dict() | {"steps": 10}
  record("unet_mnist_sample", time_sampling(net, state.ema["model"], source.spec.shape, sampler, 512))
  for dtype in dtypes:  # SiD update (fake score + generator) on the same U-Net, teacher = the model just trained
    teacher_state, teacher_net, _ = trained[dtype]
    sid = mnist_score.student("sid", 1000, 5e-5)
    sid.data.update(source=mnist.data.source, batch_size=mnist.data.batch_size)  # same batch: step times compare
    sid.model.compute_dtype = dtype
    teacher = Teacher(network=teacher_net, params=teacher_state.ema["model"])
    name = f"unet_mnist_sid_step{suffix(dtype)}"
    row = time_training(sid, args.steps, teacher)[3]
    record(name, row | {"x_teacher": rows[f"unet_mnist_train{suffix(dtype)}"]["steps_per_sec"] / row["steps_per_sec"]})
  # Discriminator pool: the pure adversarial step (pool update + four-level student update) and SiD with the pool,
  # float32, teacher = the U-Net just trained.
  teacher_state, teacher_net, _ = trained["float32"]
  teacher = Teacher(network=teacher_net, params=teacher_state.ema["model"])
  for name, config in (("unet_mnist_pool_step", mnist_nitro.student(1000)),
                       ("unet_mnist_sid_pool_step", mnist_sid_pool.get_config().stages.distill.config)):
    config.data.update(source=mnist.data.source, batch_size=mnist.data.batch_size)
    row = time_training(config, args.steps, teacher, per_group=True)[3]
    teacher_step = 1.0 / rows["unet_mnist_train"]["steps_per_sec"]
    group_seconds = row.pop("group_seconds")
    record(name, row | {"x_teacher": rows["unet_mnist_train"]["steps_per_sec"] / row["steps_per_sec"]})
    for group, seconds in group_seconds.items():
      record(f"{name}: {group} gradient only", {"steps_per_sec": 1.0 / seconds, "x_teacher": seconds / teacher_step})
  # Multi-student SiD, K = 5 students of 8 rows, in every layout, against one student on the same 40 rows.
  conditional = mnist_msd.teacher()
  conditional.data.source = mnist.data.source
  teacher_state, teacher_net, _, _ = time_training(conditional, 3)
  teacher = Teacher(network=teacher_net, params=teacher_state.ema["model"])
  single = mnist_msd.student("sid", 0)
  single.data.source = mnist.data.source
  one = time_training(single, args.steps, teacher)[3]
  record("unet_mnist_cond_sid_step, 1 student of 40 rows", one | {"x_teacher": 1.0})
  for layout in LAYOUTS:
    msd = mnist_msd.student("sid", 5)
    msd.data.source = mnist.data.source
    msd.multi_student.layout = layout
    row = time_training(msd, max(args.steps // 5, 5), teacher)[3]
    record(f"unet_mnist_msd_sid_step, 5 students of 8 rows, layout {layout}",
           row | {"x_teacher": one["steps_per_sec"] / row["steps_per_sec"]})
  if args.cifar:
    cifar = cifar10_teacher.get_config()
    cifar.data.update(source=random_images("cifar", (32, 32, 3), 2 * args.cifar_batch), batch_size=args.cifar_batch)
    time_unet("unet_cifar10", cifar, max(args.steps // 5, 5))

  device = jax.devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  memory = {"peak_rss_mib": benchmarking.peak_rss_mib()}
  if stats and "peak_bytes_in_use" in stats:
    memory["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
  machine = benchmarking.machine_info()
  result = {"machine": machine, "results": rows, "memory": memory}
  lines = [benchmarking.machine_line(machine), "",
           "| benchmark | params | batch | steps/s | items/s | x teacher step | step memory MiB | samples/s | NFE | evals/s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, r in rows.items():
    cell = lambda k, fmt="{:.1f}": fmt.format(r[k]) if k in r else ""
    lines.append(f"| {name} | {cell('params', '{:,}')} | {cell('batch_size', '{}')} | {cell('steps_per_sec', '{:.2f}')} "
                 f"| {cell('items_per_sec', '{:.0f}')} | {cell('x_teacher', '{:.2f}')} | {cell('step_memory_mib')} | "
                 f"{cell('samples_per_sec', '{:.0f}')} | {cell('nfe', '{}')} | {cell('evals_per_sec', '{:.0f}')} |")
  lines += ["", "Memory: " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items())]
  benchmarking.write_report(args.out, "throughput", result, lines, results=args.results)


if __name__ == "__main__":
  main()

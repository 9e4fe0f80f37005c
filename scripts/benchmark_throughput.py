"""Training and sampling throughput of the 2-D MLP and the MNIST U-Net, plus peak memory.

  python scripts/benchmark_throughput.py --out bench_out [--mnist ../shared/data/mnist10k.npz] [--devices 1]

Writes bench_out/throughput.json and bench_out/throughput.md. Training: steps/s and items/s of the jitted step
(compile excluded, measured over --steps steps after a warm-up). Sampling: samples/s and network evaluations per
second (samples x NFE / s) for an Euler sampler. Memory: the process's peak RSS, and the device's peak bytes where
the backend reports it (GPU/TPU).
"""

from __future__ import annotations

import argparse
import os
import time


def parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="bench_out")
  p.add_argument("--mnist", default="", help="npz with MNIST images (default: random 28x28 images)")
  p.add_argument("--devices", type=int, default=1, help="fake CPU devices (CPU only; 1 = plain)")
  p.add_argument("--steps", type=int, default=50, help="timed training steps per model")
  return p.parse_args()


def main():
  args = parse()
  if args.devices > 1:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  import jax
  import numpy as np

  from configs import mnist_teacher, toy2d_teacher
  from distill import benchmarking, data as data_lib
  from distill import objectives, sharding
  from distill.generation import Generator
  from distill.trainer import Trainer

  def time_training(config, steps):
    mesh = sharding.make_mesh(config.mesh)
    source = data_lib.make_source(config.data.source, 0)
    objective = objectives.build(config, source.spec)
    trainer = Trainer(objective, mesh, config.sharding.rules, config.ema, 0)
    state = trainer.init_state()
    batches = [sharding.global_batch(source.global_batch(i, config.data.batch_size), mesh) for i in range(4)]
    for i in range(3):  # compile + warm-up
      state, m = trainer.step(state, None, batches[i % 4])
    jax.block_until_ready(state)
    start = time.perf_counter()
    for i in range(steps):
      state, m = trainer.step(state, None, batches[i % 4])
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - start
    network = objective.groups[objective.sample_group].network
    return state, network, source, {
        "params": network.num_params(), "batch_size": config.data.batch_size,
        "steps_per_sec": steps / elapsed, "items_per_sec": steps * config.data.batch_size / elapsed}

  def time_sampling(network, params, shape, sampler_config, num):
    gen = Generator(network, shape, sampler_config, batch_size=num)
    gen.generate(params, jax.random.key(0), num)  # compile
    start = time.perf_counter()
    gen.generate(params, jax.random.key(1), num)
    elapsed = time.perf_counter() - start
    nfe = gen.nfe()
    return {"num": num, "nfe": nfe, "samples_per_sec": num / elapsed, "evals_per_sec": num * nfe / elapsed}

  rows = {}
  toy = toy2d_teacher.get_config()
  toy.data.source = "toy:checkerboard"
  state, net, source, rows["mlp_2d_train"] = time_training(toy, args.steps * 4)
  rows["mlp_2d_sample"] = time_sampling(net, state.ema["model"], source.spec.shape, toy.sampler.to_dict(), 8192)

  mnist = mnist_teacher.get_config()
  if args.mnist:
    mnist.data.source = f"npz:{args.mnist}"
  else:
    path = os.path.join(args.out, "random_images.npz")
    os.makedirs(args.out, exist_ok=True)
    np.savez(path, images=np.random.default_rng(0).integers(0, 256, (512, 28, 28), dtype=np.uint8))
    mnist.data.source = f"npz:{path}"
  state, net, source, rows["unet_mnist_train"] = time_training(mnist, args.steps)
  sampler = mnist.sampler.to_dict() | {"steps": 10}
  rows["unet_mnist_sample"] = time_sampling(net, state.ema["model"], source.spec.shape, sampler, 512)

  device = jax.devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  memory = {"peak_rss_mib": benchmarking.peak_rss_mib()}
  if stats and "peak_bytes_in_use" in stats:
    memory["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
  machine = benchmarking.machine_info()
  result = {"machine": machine, "results": rows, "memory": memory}
  lines = [benchmarking.machine_line(machine), "",
           "| benchmark | params | batch | steps/s | items/s | samples/s | NFE | evals/s |", "|---|---|---|---|---|---|---|---|"]
  for name, r in rows.items():
    cell = lambda k, fmt="{:.1f}": fmt.format(r[k]) if k in r else ""
    lines.append(f"| {name} | {cell('params', '{:,}')} | {cell('batch_size', '{}')} | {cell('steps_per_sec')} | "
                 f"{cell('items_per_sec', '{:.0f}')} | {cell('samples_per_sec', '{:.0f}')} | {cell('nfe', '{}')} | "
                 f"{cell('evals_per_sec', '{:.0f}')} |")
  lines += ["", "Memory: " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items())]
  benchmarking.write_report(args.out, "throughput", result, lines)


if __name__ == "__main__":
  main()

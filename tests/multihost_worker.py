"""One process of a multi-process CPU run for tests/test_multihost.py (not a test module).

  python tests/multihost_worker.py --port P --process_id I --num_processes N --local_devices D --workdir W --out O

Joins JAX's distributed runtime (CPU collectives: gloo, JAX's default), trains configs/tiny.py for --steps steps with
mesh {data: -1, fsdp: 1} through distill.run.train into the shared workdir, and writes O (an .npz): the final
parameters gathered to every process, the rows of the batch this process loaded, and a JSON `info` record.
"""

import argparse
import json
import os
import sys


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--process_id", type=int, required=True)
  parser.add_argument("--num_processes", type=int, required=True)
  parser.add_argument("--local_devices", type=int, required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--ckpt_every", type=int, default=3)
  args = parser.parse_args()

  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
  import jax

  jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/distill/jax-tests"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.distributed.initialize(coordinator_address=f"localhost:{args.port}", num_processes=args.num_processes,
                             process_id=args.process_id)

  import numpy as np
  from jax.experimental import multihost_utils

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import tiny
  from distill import data as data_lib, run

  calls = []
  original = data_lib.DataSource.local_batch

  def recording_local_batch(self, step, batch_size, process_index, process_count):
    batch = original(self, step, batch_size, process_index, process_count)
    calls.append({"step": step, "batch_size": batch_size, "process_index": process_index,
                  "process_count": process_count, "rows": int(batch["x"].shape[0]), "x": batch["x"]})
    return batch

  data_lib.DataSource.local_batch = recording_local_batch

  config = tiny.get_config()
  config.train.num_steps = args.steps
  config.train.ckpt_every = args.ckpt_every
  config.mesh.update(data=-1, fsdp=1)
  state = run.train(config, args.workdir)

  arrays = {"param" + jax.tree_util.keystr(p): np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for p, x in jax.tree_util.tree_flatten_with_path(state.params)[0]}
  arrays["batch0"] = calls[0]["x"]
  info = {"process_index": jax.process_index(), "process_count": jax.process_count(),
          "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
          "step": int(np.asarray(state.step.addressable_data(0))),
          "calls": [{k: v for k, v in c.items() if k != "x"} for c in calls]}
  np.savez(args.out, info=json.dumps(info), **arrays)
  multihost_utils.sync_global_devices("multihost_worker done")
  jax.distributed.shutdown()


if __name__ == "__main__":
  main()

"""One process of a multi-process CPU run for tests/test_multihost.py (not a test module).

  python tests/multihost_worker.py --local_devices D --out O train --config configs/tiny.py --workdir W \
      --coordinator localhost:P --num_processes N --process_id I [--config.KEY=VALUE ...]

Runs the `distill` command line (distill.cli.main) on the arguments after its own two: with --coordinator it joins
JAX's distributed runtime (CPU collectives: gloo, JAX's default) and trains through distill.run.train into the shared
workdir. Then writes O (an .npz): the final parameters gathered to every process, the rows of the batch this process
loaded, and a JSON `info` record.
"""

import argparse
import json
import os
import sys


def main():
  parser = argparse.ArgumentParser(allow_abbrev=False)
  parser.add_argument("--local_devices", type=int, required=True)
  parser.add_argument("--out", required=True)
  args, distill_argv = parser.parse_known_args()

  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from distill import cli, data as data_lib, run

  calls = []
  original = data_lib.DataSource.local_batch

  def recording_local_batch(self, step, batch_size, process_index, process_count):
    batch = original(self, step, batch_size, process_index, process_count)
    calls.append({"step": step, "batch_size": batch_size, "process_index": process_index,
                  "process_count": process_count, "rows": int(batch["x"].shape[0]), "x": batch["x"]})
    return batch

  data_lib.DataSource.local_batch = recording_local_batch
  states = []
  original_train = run.train

  def recording_train(*a, **kw):
    states.append(original_train(*a, **kw))
    return states[-1]

  run.train = recording_train
  assert cli.main(distill_argv) == 0  # initialises the distributed runtime from --coordinator and trains
  state, = states

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

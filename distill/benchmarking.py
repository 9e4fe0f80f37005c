"""What every benchmark script records: the machine it ran on, and its figures as JSON plus a markdown table."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys


def machine_info() -> dict:
  import jax

  device = jax.devices()[0]
  return {"platform": platform.platform(), "python": sys.version.split()[0], "jax": jax.__version__,
          "backend": jax.default_backend(), "device_kind": device.device_kind, "devices": jax.device_count(),
          "cpu_count": os.cpu_count()}


def machine_line(machine: dict) -> str:
  return (f"Machine: {machine['device_kind']} x{machine['devices']} ({machine['backend']}), {machine['cpu_count']} "
          f"CPU cores, jax {machine['jax']}")


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_report(out_dir: str, name: str, result: dict, markdown_lines: list[str]) -> None:
  """Write out_dir/name.json and out_dir/name.md and print the markdown."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write("\n".join(markdown_lines) + "\n")
  print("\n".join(markdown_lines))

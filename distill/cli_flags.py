"""Flag parsing shared by the `distill` subcommands: a fresh absl FlagValues per call, one-line errors, and
`--help` that lists every flag on one line."""

from __future__ import annotations

from absl import flags

from distill.errors import UserError


def _usage_error(e) -> UserError:
  text = str(e).strip()
  return UserError(text.splitlines()[0] if text else type(e).__name__)


class HelpRequested(Exception):
  """`--help` / `-h` was given: the subcommand's help text is in args[0]."""


def help_text(command: str, summary: str, fv: flags.FlagValues) -> str:
  """`distill COMMAND: summary` and one line per flag: --name  help (default: value)."""
  lines = [f"distill {command}: {summary}", "", "flags:"]
  flag_list = sorted({fv[name].name: fv[name] for name in fv}.values(), key=lambda f: f.name)
  width = max(len(f.name) for f in flag_list) + 2
  for f in flag_list:
    default = "" if f.default in (None, "", False) else f" (default: {f.default_as_str or f.default})"
    lines.append(f"  --{f.name:<{width}} {' '.join(str(f.help).split())}{default}")
  if "config" in fv:
    lines.append(f"  --config.KEY=VALUE{' ' * max(1, width - 14)} override any key of the config file")
  return "\n".join(lines)


def parse_flags(argv, define, command: str = "", summary: str = ""):
  """Parse argv (without the subcommand) with a fresh absl FlagValues populated by `define(fv, full_argv)`;
  `--help` raises HelpRequested with the subcommand's help text."""
  full_argv = ["distill"] + list(argv)
  fv = flags.FlagValues()
  define(fv, full_argv)
  if any(a in ("-h", "--help", "-help", "--helpfull") for a in argv):
    raise HelpRequested(help_text(command, summary, fv))
  try:
    fv(full_argv)
  except (KeyError, AttributeError) as e:  # ml_collections: an override names a key the config does not have
    key = next((a.split("=")[0][len("--config."):] for a in argv
                if a.startswith("--config.") and str(e).strip("'\"") in a), None)
    raise _usage_error(f"unknown config key {key or e}") from None
  except (flags.Error, ValueError, TypeError) as e:
    raise _usage_error(e) from None
  return fv


def require_flags(fv, *names):
  for name in names:
    if fv[name].value is None:
      raise UserError(f"--{name} is required")

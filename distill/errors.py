"""Errors that the command line reports as one line (bad config, missing file, mismatched checkpoint...)."""


class UserError(Exception):
  """A problem with the user's input or files; the CLI prints the message without a traceback."""


class NonFiniteLossError(UserError):
  """Training produced a non-finite loss or gradient; the run stopped with its last good checkpoint kept."""

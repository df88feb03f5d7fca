"""The error type for bad input data: `main.py` turns it into one line and exit code 2."""


class DataError(ValueError):
  """The input data cannot be used. The message names the file and the problem."""

"""What a user waiting on a run sees: the ETA in each epoch line, and a bar inside long epochs."""

from __future__ import annotations

import sys
import time


def eta_seconds(*, epochs_done: int, epochs_total: int, seconds_so_far: float) -> float:
  """Seconds left if the remaining epochs take as long as the average so far.

  An upper bound: early stopping may end the run sooner.
  """
  if epochs_done <= 0:
    return float("nan")
  return max(0, epochs_total - epochs_done) * seconds_so_far / epochs_done


def format_duration(seconds: float) -> str:
  """'42s', '3m05s', '1h02m'; '?' when unknown."""
  if seconds != seconds or seconds < 0:  # NaN: nothing measured yet.
    return "?"
  s = int(round(seconds))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


class EpochBar:
  """A one-line progress bar over the steps of an epoch, redrawn in place.

  Only drawn when `stream` is a terminal and the epoch has more than one compiled call: in a
  log file, carriage returns would be noise, and a one-call epoch has nothing to show.
  """

  def __init__(self, *, epoch: int, total_steps: int, steps_per_call: int, stream=None,
               width: int = 30):
    self.stream = stream or sys.stdout
    self.epoch, self.total, self.width = epoch, total_steps, width
    isatty = getattr(self.stream, "isatty", lambda: False)
    self.enabled = total_steps > steps_per_call and isatty()
    self.done = 0
    self.t0 = time.perf_counter()

  def update(self, steps: int) -> None:
    self.done += steps
    if not self.enabled:
      return
    frac = self.done / self.total
    elapsed = time.perf_counter() - self.t0
    left = elapsed / frac * (1 - frac) if frac > 0 else float("nan")
    filled = int(frac * self.width)
    self.stream.write(f"\repoch {self.epoch:3d} [{'=' * filled}{' ' * (self.width - filled)}] "
                      f"{self.done}/{self.total} steps, {format_duration(left)} left ")
    self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      # Clear the bar's line so the epoch's log line starts clean.
      self.stream.write("\r" + " " * (self.width + 60) + "\r")
      self.stream.flush()

"""What a user sees on the console: the epoch lines with their ETA, a bar inside long epochs, and
the closing block saying where the run's files are.

The console is meant for a 100-column terminal: the config lives in config.json and TensorBoard,
every other metric in TensorBoard and results.json, under the names the console uses.
"""

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
  if seconds != seconds or seconds < 0:  # NaN: nothing timed yet.
    return "?"
  s = int(round(seconds))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(examples_per_second: float) -> str:
  if examples_per_second >= 1e4:
    return f"{examples_per_second / 1e3:.0f}k"
  return f"{examples_per_second:.0f}"


def epoch_line(*, epoch: int, train: dict, validation: dict, eta_seconds: float, status: str,
               extra: str = "prc") -> str:
  """One epoch in one line of a 100-column terminal: the training loss, the validation loss
  and exact PR-AUC (and the monitored metric if it is another), speed, ETA, and whether the
  epoch was the best.

  Names are the TensorBoard tags of the `train` and `validation` runs; `prc` is exact.
  """
  val = " ".join(f"{k} {validation[k]:.4f}" for k in dict.fromkeys(("loss", "prc", extra)))
  return (f"epoch {epoch:3d}  train loss {train['loss']:.4f}  val {val}  "
          f"{_rate(train['examples_per_second'])} ex/s  ETA {format_duration(eta_seconds)}  "
          f"{status}")


def epoch_status(*, improved: bool, wait: int, members_improved=None) -> str:
  """`best`, or `wait N` (epochs without improvement of the monitor); for an ensemble, also how
  many members improved their own best (each keeps its own best weights).

  Args:
    improved: whether the monitored metric improved this epoch.
    wait: epochs since it last improved.
    members_improved: an ensemble's boolean mask of members whose own best is this epoch.
  """
  status = "best" if improved else f"wait {wait}"
  if members_improved is not None and len(members_improved) > 1:
    status += f", {int(sum(members_improved))}/{len(members_improved)} members best"
  return status


# What each monitorable metric is, for the line that says what early stopping follows.
_MONITORED = {"prc": "exact PR-AUC", "auc": "exact ROC-AUC", "loss": "log loss"}


def monitor_description(config) -> str:
  """What `--monitor` stops on, in one short line: which metric, of which scores, fitted how.

  The ranking metrics do not depend on the calibration (every fit is monotone); the others are
  of the calibrated scores, cross-fitted with `--calibration=platt` (engine/calibration.py).
  """
  from engine import calibration
  name = config.monitor_metric
  what = f"{config.monitor}, {_MONITORED.get(name, name + ' at 0.5')} of validation"
  if name in ("prc", "auc"):
    return what + ", a ranking (no fit changes it)"
  if config.calibration == "platt" and name in calibration.CROSS_FITTED:
    return what + f", Platt fit {calibration.FOLDS}-fold cross-fitted"
  return what + ", prior-corrected (nothing fitted)"


def closing_block(model_dir: str, runs: list[str], comparison: bool = False) -> list[str]:
  """Where to look next: results, exports, logs, and the TensorBoard command.

  Args:
    model_dir: the directory the command wrote.
    runs: the run directories under it (`[model_dir]` for one run).
    comparison: whether model_dir holds comparison.md and comparison.json.
  """
  import os
  import shlex
  # Several runs share a parent: one shell brace pattern keeps each line short.
  where = runs[0] if len(runs) == 1 else os.path.join(
      model_dir, "{" + ",".join(os.path.basename(r) for r in runs) + "}")
  lines = []
  if comparison:
    lines.append(f"Comparison:  {os.path.join(model_dir, 'comparison.md')} (and .json)")
  lines.append(f"Results:     {os.path.join(where, 'results.json')}")
  lines.append(f"Export:      {os.path.join(where, 'export')}")
  lines.append(f"Logs:        {os.path.join(where, 'logs')}")
  lines.append(f"TensorBoard: tensorboard --logdir {shlex.quote(model_dir)}")
  return lines


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

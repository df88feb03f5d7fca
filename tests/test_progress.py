import io
import math

import pytest

from engine import progress


@pytest.mark.parametrize("done,total,seconds,eta", [
    (1, 10, 5.0, 45.0), (10, 10, 50.0, 0.0), (4, 2, 8.0, 0.0), (3, 100, 30.0, 970.0)])
def test_eta(done, total, seconds, eta):
  assert progress.eta_seconds(epochs_done=done, epochs_total=total,
                              seconds_so_far=seconds) == pytest.approx(eta)


def test_eta_unknown_before_the_first_epoch():
  assert math.isnan(progress.eta_seconds(epochs_done=0, epochs_total=5, seconds_so_far=0.0))


@pytest.mark.parametrize("seconds,text", [(0.4, "0s"), (59.4, "59s"), (59.6, "1m00s"),
                                          (185, "3m05s"), (3599, "59m59s"), (3600, "1h00m"),
                                          (3720, "1h02m"), (float("nan"), "?")])
def test_format_duration(seconds, text):
  assert progress.format_duration(seconds) == text


class Tty(io.StringIO):
  def isatty(self):
    return True


@pytest.mark.parametrize("stream_type,total,per_call,drawn", [
    (Tty, 300, 100, True),          # a terminal and a long epoch: a bar
    (io.StringIO, 300, 100, False),  # a log file: quiet
    (Tty, 100, 100, False),          # one compiled call per epoch: nothing to show
])
def test_bar_only_on_terminals_in_long_epochs(stream_type, total, per_call, drawn):
  stream = stream_type()
  bar = progress.EpochBar(epoch=3, total_steps=total, steps_per_call=per_call, stream=stream)
  for _ in range(total // per_call):
    bar.update(per_call)
  text = stream.getvalue()
  bar.close()
  assert bar.done == total
  assert (f"{total}/{total} steps" in text) is drawn
  assert ("\r" in stream.getvalue()) is drawn


@pytest.mark.parametrize("monitor,method,says", [
    ("val_loss", "platt", "val_loss, log loss of validation, Platt fit 2-fold cross-fitted"),
    ("val_loss", "prior", "val_loss, log loss of validation, prior-corrected (nothing fitted)"),
    ("val_recall", "platt", "val_recall, recall at 0.5 of validation, Platt fit 2-fold "
                            "cross-fitted"),
    ("val_prc", "platt", "val_prc, exact PR-AUC of validation, a ranking (no fit changes it)"),
    ("val_auc_exact", "prior", "val_auc_exact, exact ROC-AUC of validation, a ranking"),
])
def test_the_run_says_what_early_stopping_follows(monitor, method, says):
  from engine.config import Config
  line = progress.monitor_description(Config(monitor=monitor, calibration=method))
  assert line.startswith(says)
  assert len("00:00:00 Early stopping on " + line) <= 100  # A terminal's width.


@pytest.mark.parametrize("improved,wait,members,status", [
    (True, 0, None, "best"), (False, 3, None, "wait 3"), (True, 0, [True], "best"),
    (False, 1, [True, False, True, False], "wait 1, 2/4 members best"),
    (True, 0, [False, False], "best, 0/2 members best")])
def test_epoch_status_counts_the_members_that_improved(improved, wait, members, status):
  assert progress.epoch_status(improved=improved, wait=wait, members_improved=members) == status

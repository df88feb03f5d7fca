import math

import pytest

from engine.early_stopping import EarlyStopping


@pytest.mark.parametrize("higher,values,patience,best_epoch,stop_after", [
    # Improves every epoch: never stops.
    (True, [0.1, 0.2, 0.3, 0.4], 2, 4, None),
    # Patience 2: two epochs without improvement stop the run, exactly then (not one earlier).
    (True, [0.5, 0.4, 0.45], 2, 1, 3),
    (True, [0.5, 0.4], 2, 1, None),
    # Equal is not better.
    (True, [0.5, 0.5, 0.5], 2, 1, 3),
    # Lower is better (loss).
    (False, [1.0, 0.9, 0.95, 0.96, 0.97], 3, 2, 5),
    # NaN never improves.
    (True, [0.3, math.nan, math.nan], 2, 1, 3),
    # Patience 1.
    (True, [0.3, 0.2], 1, 1, 2),
])
def test_patience_edges(higher, values, patience, best_epoch, stop_after):
  es = EarlyStopping(patience=patience, higher_is_better=higher)
  stopped_at = None
  for epoch, value in enumerate(values, start=1):
    es.update(value, epoch)
    if es.should_stop and stopped_at is None:
      stopped_at = epoch
  assert int(es.best_epoch.numpy()) == best_epoch
  assert stopped_at == stop_after


def test_recovery_resets_patience():
  es = EarlyStopping(patience=2, higher_is_better=True)
  for epoch, value in enumerate([0.5, 0.4, 0.6, 0.55], start=1):
    es.update(value, epoch)
  assert not es.should_stop
  assert es.state() == {"best_value": 0.6, "best_epoch": 3, "wait": 1, "patience": 2}

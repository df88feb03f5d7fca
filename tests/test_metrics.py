import numpy as np
import pytest
import tensorflow as tf

from engine.metrics import METRIC_NAMES, Metrics


def _update(metrics, seed=0, n=1000):
  rng = np.random.default_rng(seed)
  y = tf.constant((rng.random(n) < 0.3).astype(np.int32))
  p = tf.constant(rng.random(n).astype(np.float32))
  loss = tf.constant(rng.random(n).astype(np.float32))
  metrics.update(y, p, loss)
  return y, p, loss


def test_compiled_result_equals_the_keras_metrics_read_eagerly():
  metrics = Metrics()
  _update(metrics, seed=0)
  _update(metrics, seed=1)
  got = metrics.result()
  assert list(got) == list(METRIC_NAMES)
  expected = {"loss": float(metrics.loss.result())}
  expected.update({k: float(m.result()) for k, m in metrics.classification.items()})
  for name in METRIC_NAMES:
    assert got[name] == pytest.approx(expected[name], rel=1e-6), name
  assert got["tp"] + got["fp"] + got["tn"] + got["fn"] == 2000


def test_reset_starts_every_metric_over_without_retracing():
  metrics = Metrics()
  _update(metrics, seed=0)
  metrics.result()
  metrics.reset()
  zero = metrics.result()
  assert all(zero[k] == 0.0 for k in ("loss", "tp", "fp", "tn", "fn"))
  y, p, _ = _update(metrics, seed=2, n=500)
  after = metrics.result()
  assert after["tp"] == int(((p.numpy() >= 0.5) & (y.numpy() == 1)).sum())
  metrics.reset()
  metrics.result()
  assert metrics._result.experimental_get_tracing_count() == 1
  assert metrics._reset.experimental_get_tracing_count() == 1

import numpy as np
import pytest
from scipy import special

from engine import calibration


def _sigmoid(z):
  return special.expit(np.asarray(z, np.float64))


def _log_loss(y, p):
  p = np.clip(p, 1e-15, 1 - 1e-15)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _miscalibrated(rows: int, seed: int, scale: float = 0.7, offset: float = 1.5):
  """Scores p = sigmoid(z) of a model whose real probability is sigmoid(scale * z + offset):
  rare positives (~1%), like an oversampled model whose prior correction overshoots."""
  rng = np.random.default_rng(seed)
  z = rng.normal(-8.0, 2.5, rows)
  y = (rng.random(rows) < _sigmoid(scale * z + offset)).astype(np.int64)
  return y, _sigmoid(z)


def test_fit_recovers_the_scale_and_offset_of_a_known_miscalibration():
  y, p = _miscalibrated(400_000, seed=0)
  fitted = calibration.fit(y, p)
  assert fitted.method == "platt" and fitted.why is None
  assert fitted.scale == pytest.approx(0.7, abs=0.05)
  assert fitted.offset == pytest.approx(1.5, abs=0.3)


def test_fit_is_the_maximum_of_the_likelihood_with_platts_targets():
  y, p = _miscalibrated(50_000, seed=1)
  fitted = calibration.fit(y, p)
  z = calibration.logits(p)
  positives, negatives = y.sum(), len(y) - y.sum()
  target = np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))

  def loss(a, b):
    q = np.clip(_sigmoid(a * z + b), 1e-300, 1 - 1e-16)
    return -np.sum(target * np.log(q) + (1 - target) * np.log1p(-q))

  best = loss(fitted.scale, fitted.offset)
  for da, db in ((1e-3, 0), (-1e-3, 0), (0, 1e-2), (0, -1e-2)):
    assert loss(fitted.scale + da, fitted.offset + db) > best


def test_calibration_fitted_on_one_sample_lowers_the_log_loss_of_another():
  y_val, p_val = _miscalibrated(50_000, seed=2)
  y_test, p_test = _miscalibrated(50_000, seed=3)
  fitted = calibration.fit(y_val, p_val)
  assert _log_loss(y_test, calibration.apply(p_test, fitted)) < 0.9 * _log_loss(y_test, p_test)


def test_apply_keeps_the_ranking_and_maps_the_ends_to_themselves():
  p = np.array([0.0, 1e-300, 1e-9, 0.01, 0.3, 0.3, 0.9, 1 - 1e-12, 1.0])
  q = calibration.apply(p, calibration.Calibration("platt", scale=1.3, offset=2.0))
  assert q[0] == 0.0 and q[-1] == 1.0
  assert np.all(np.diff(q) >= 0) and q[4] == q[5]
  np.testing.assert_allclose(q[1:-1], _sigmoid(1.3 * np.log(p[1:-1] / (1 - p[1:-1])) + 2.0),
                             rtol=1e-9)


def test_the_identity_returns_the_scores_themselves():
  p = np.random.default_rng(0).random(1000) ** 8
  np.testing.assert_array_equal(calibration.apply(p, calibration.IDENTITY), p)


def test_a_split_the_scores_separate_still_gets_a_finite_increasing_fit():
  y = np.r_[np.zeros(500), np.ones(20)].astype(np.int64)
  p = np.r_[np.linspace(1e-6, 0.2, 500), np.linspace(0.6, 0.999, 20)]
  fitted = calibration.fit(y, p)
  assert fitted.method == "platt"
  assert np.isfinite(fitted.scale) and fitted.scale > 0 and np.isfinite(fitted.offset)


def test_a_split_of_one_class_keeps_the_prior_corrected_scores_and_says_why():
  fitted = calibration.fit(np.zeros(100, np.int64), np.linspace(0.01, 0.5, 100))
  assert (fitted.scale, fitted.offset) == (1.0, 0.0)
  assert "one class" in fitted.why
  assert fitted.as_dict()["why"] == fitted.why


def test_a_reversed_ranking_is_not_used():
  # The scores rank the negatives above the positives: the best fit has a negative scale,
  # which would reverse every decision; the prior-corrected scores stay.
  y = np.r_[np.zeros(300), np.ones(300)].astype(np.int64)
  p = np.r_[np.linspace(0.5, 0.9, 300), np.linspace(0.1, 0.6, 300)]
  fitted = calibration.fit(y, p)
  assert (fitted.scale, fitted.offset) == (1.0, 0.0) and "reverse" in fitted.why


def test_folds_are_stratified_and_fixed():
  y = np.r_[np.zeros(101), np.ones(7)].astype(np.int64)[np.random.default_rng(0).permutation(108)]
  fold = calibration.folds(y)
  for cls, n in ((0, 101), (1, 7)):
    counts = np.bincount(fold[y == cls], minlength=calibration.FOLDS)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n  # each class split evenly
  np.testing.assert_array_equal(calibration.folds(y), fold)  # the same rows every epoch


def test_no_row_is_calibrated_by_a_fit_that_saw_it():
  y, p = _miscalibrated(20_000, seed=4)
  whole = calibration.fit(y, p)
  out = calibration.cross_fitted(y, p, whole)
  fold = calibration.folds(y)
  # Each half's probabilities are the fit on the other half's rows applied to it.
  for k in range(calibration.FOLDS):
    other = calibration.fit(y[fold != k], p[fold != k])
    assert other != whole  # A different fit, so the test can tell.
    np.testing.assert_allclose(out[fold == k], calibration.apply(p[fold == k], other), rtol=1e-9)


def test_the_in_sample_fit_flatters_its_own_rows():
  # What cross-fitting is for: on the rows it was fitted on, the fit's log loss is the lowest
  # any scale and offset can reach (it maximises their likelihood); out of fold it is not.
  y, p = _miscalibrated(4_000, seed=5)
  whole = calibration.fit(y, p)
  in_sample = _log_loss(y, calibration.apply(p, whole))
  out_of_fold = _log_loss(y, calibration.cross_fitted(y, p, whole))
  assert in_sample < out_of_fold


def test_fit_method_prior_is_the_identity():
  y, p = _miscalibrated(5_000, seed=6)
  assert calibration.fit_method("prior", y, p) == calibration.IDENTITY
  assert calibration.fit_method("platt", y, p) == calibration.fit(y, p)


def test_a_warm_start_reaches_the_same_fit():
  y, p = _miscalibrated(20_000, seed=7)
  cold = calibration.fit(y, p)
  warm = calibration.fit(y, p, start=calibration.Calibration("platt", scale=0.5, offset=-1.0))
  assert warm.scale == pytest.approx(cold.scale, rel=1e-6)
  assert warm.offset == pytest.approx(cold.offset, rel=1e-6, abs=1e-6)

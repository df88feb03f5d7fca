import numpy as np
import pytest
from sklearn import metrics as skm

from engine import evaluation


def _cases():
  rng = np.random.default_rng(0)
  for trial in range(60):
    n = int(rng.integers(2, 3000))
    y = (rng.random(n) < rng.uniform(0.002, 0.5)).astype(np.int64)
    y[0], y[-1] = 0, 1  # both classes
    p = rng.random(n)
    if trial % 3 == 0:
      p = np.round(p, 1)  # heavy ties, across classes
    elif trial % 3 == 1:
      p = np.round(p, 3)
    yield y, p


@pytest.mark.parametrize("y, p", list(_cases()))
def test_auc_and_average_precision_equal_sklearn(y, p):
  auc, ap = evaluation.roc_auc_and_average_precision(y, p)
  assert auc == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
  assert ap == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_known_values():
  # Perfect ranking, reversed ranking, and all scores tied.
  y = np.array([0, 0, 1, 1])
  assert evaluation.roc_auc_and_average_precision(y, np.array([.1, .2, .8, .9])) == (1.0, 1.0)
  auc, ap = evaluation.roc_auc_and_average_precision(y, np.array([.9, .8, .2, .1]))
  assert auc == 0.0 and ap == pytest.approx((1 / 3 + 2 / 4) / 2)
  assert evaluation.roc_auc_and_average_precision(y, np.full(4, 0.5)) == (0.5, 0.5)


def test_exact_metrics_with_one_class_has_no_auc():
  m = evaluation.exact_metrics(np.zeros(5), np.linspace(0.1, 0.9, 5))
  assert np.isnan(m["auc"]) and np.isnan(m["prc"])
  assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (0, 3, 2, 0)


def test_exact_areas_use_unclipped_scores_where_they_saturate():
  # Scores saturated beyond the log loss's clip (1e-7): clipping them would tie them and change
  # the ranking the areas measure (0.9038 against sklearn's 0.9024 in the case that found it).
  rng = np.random.default_rng(3)
  y = (rng.random(4000) < 0.05).astype(np.int64)
  y[:2] = [0, 1]
  logits = np.where(y == 1, rng.normal(18, 6, 4000), rng.normal(-18, 10, 4000))
  p = 1 / (1 + np.exp(-logits))
  assert (p > 1 - 1e-7).sum() > 100 and (p < 1e-7).sum() > 100  # saturated on both ends
  m = evaluation.exact_metrics(y, p)
  assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
  assert m["prc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-9)
  assert np.isfinite(m["loss"])


def _sklearn_recall_at_fpr(y, p, rate):
  # Every threshold: drop_intermediate would drop collinear points, some of them the best
  # within a rate.
  fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
  return tpr[fpr <= rate].max()


@pytest.mark.parametrize("y, p", list(_cases()))
def test_recall_at_fpr_equals_sklearn_roc_curve(y, p):
  fpr, _, _ = skm.roc_curve(y, p, drop_intermediate=False)
  # The rates reached exactly (the `<=` edge), and ones between them.
  rates = tuple(dict.fromkeys(map(float, (0.0, 0.001, 0.01, 0.1, 0.5, 1.0, *np.unique(fpr)[1:4],
                                           np.unique(fpr)[-2]))))
  got = evaluation.recall_at_fpr(y, p, rates)
  assert list(got) == [repr(float(a)) for a in rates]
  for a, recall in zip(rates, got.values()):
    assert recall == pytest.approx(_sklearn_recall_at_fpr(y, p, a), abs=1e-12), a


@pytest.mark.parametrize("rate, recall", [
    (0.0, 0.25), (0.05, 0.25),  # no false positive: only the 0.9 fraud
    (0.1, 0.75),                # exactly 1 FP of 10 counts; the tie at 0.8 enters whole
    (0.29, 0.75), (0.3, 1.0),   # 3 FPs of 10 are needed for the fraud scored 0.5
    (1.0, 1.0)])
def test_recall_at_fpr_by_hand(rate, recall):
  # 4 frauds, 10 legitimate; ranked: F .9 | F,L .8 (tied) | F .7 | L,L .6 | F .5 | 7 L .1.
  # (tp, fp) at each threshold: (1,0) (2,1) (3,1) (3,3) (4,3) (4,10).
  y = np.array([1, 0, 1, 1, 0, 0, 1] + [0] * 7)
  p = np.array([.9, .8, .8, .7, .6, .6, .5] + [.1] * 7)
  assert evaluation.recall_at_fpr(y, p, (rate,)) == {repr(rate): recall}


def test_recall_at_fpr_of_tied_scores_flags_all_or_nothing():
  # One score for all: flagging it is FPR 1; below that only the threshold that flags nothing.
  y = np.array([0, 1, 0, 1])
  assert evaluation.recall_at_fpr(y, np.full(4, 0.5), (0.5, 1.0)) == {"0.5": 0.0, "1.0": 1.0}


def test_recall_at_fpr_defaults_and_bad_rates():
  y = np.array([1, 0, 1, 1, 0, 0, 1] + [0] * 7)
  p = np.array([.9, .8, .8, .7, .6, .6, .5] + [.1] * 7)
  assert evaluation.recall_at_fpr(y, p) == {"0.01": 0.25, "0.001": 0.25}
  with pytest.raises(ValueError, match="in \\[0, 1\\]"):
    evaluation.recall_at_fpr(y, p, (0.01, 1.5))


@pytest.mark.parametrize("label", [0, 1])
def test_recall_at_fpr_is_nan_with_one_class(label):
  y, p = np.full(5, label), np.linspace(0.1, 0.9, 5)
  got = evaluation.recall_at_fpr(y, p)
  assert list(got) == ["0.01", "0.001"] and all(np.isnan(v) for v in got.values())
  m = evaluation.exact_metrics(y, p)["recall_at_fpr"]
  assert list(m) == ["0.01", "0.001"] and all(np.isnan(v) for v in m.values())


def test_exact_metrics_hold_recall_at_fpr_from_the_same_ranking():
  rng = np.random.default_rng(7)
  y = (rng.random(5000) < 0.01).astype(np.int64)
  y[:2] = [0, 1]
  p = np.round(np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1), 3)  # ties across classes
  m = evaluation.exact_metrics(y, p)
  assert m["recall_at_fpr"] == evaluation.recall_at_fpr(y, p)
  assert m["recall_at_fpr"]["0.01"] == _sklearn_recall_at_fpr(y, p, 0.01)
  assert m["recall_at_fpr"]["0.001"] == _sklearn_recall_at_fpr(y, p, 0.001)
  assert 0 < m["recall_at_fpr"]["0.001"] < m["recall_at_fpr"]["0.01"] < 1  # not vacuous
  assert (m["auc"], m["prc"]) == evaluation.roc_auc_and_average_precision(y, p)


def test_flat_metrics_names_nested_values():
  assert evaluation.flat_metrics({"auc": 0.9, "recall_at_fpr": {"0.01": 0.5, "0.001": 0.25}}) == {
      "auc": 0.9, "recall_at_fpr_0.01": 0.5, "recall_at_fpr_0.001": 0.25}


def test_format_table_reads_nested_metrics_by_their_flat_names():
  m = evaluation.exact_metrics(np.array([0, 1, 0, 1, 0]), np.array([.1, .9, .2, .3, .7]))
  table = evaluation.format_table({"at 0.5": m, "at 0.7": {"tp": 2, "fp": 1}})
  header, half, other = table.splitlines()
  assert header.split()[-1] == "r@fpr1%"
  assert half.split()[-1] == "0.5000"  # one fraud (0.9) before the first false positive (0.7)
  assert other.split()[-1] == "-"
  # A column for the nested dict itself, or a text value, is shown, not a crash.
  assert evaluation.format_table({"r": {"recall_at_fpr": {"0.01": 1.0}, "x": "?"}},
                                 ("recall_at_fpr", "x")).splitlines()[1].split() == ["r", "-", "?"]


def _results(count: int) -> dict:
  at_half = {"tp": count, "fp": count, "tn": count, "fn": count, "precision": 0.1234,
             "recall": 0.5, "auc": 0.98, "prc": 0.7, "loss": 0.0123,
             "recall_at_fpr": {"0.01": 0.8125, "0.001": 0.5}}
  at_t = {k: at_half[k] for k in ("tp", "fp", "tn", "fn", "precision", "recall")}
  return {"validation": at_half, "test": at_half, "weights": {"which": "best", "epoch": 123},
          "threshold": {"value": 1.234e-05, "target_recall": 0.9, "validation": at_t,
                        "test": at_t}}


@pytest.mark.parametrize("count", [7, 284807])
def test_results_table_shows_recall_at_1_percent_fpr_at_0_5_only(count):
  lines = evaluation.results_table(_results(count)).splitlines()
  assert max(len(line) for line in lines) <= 100, max(lines, key=len)
  header = next(line.split() for line in lines if line.split()[:1] == ["threshold"])
  column = header.index("r@fpr1%") + 1  # Rows start with their name.
  cells = {line[:14].strip(): line[14:].split() for line in lines[-4:]}
  assert set(cells) == {"validation", "test", "validation @t", "test @t"}
  assert cells["validation"][column - 1] == cells["test"][column - 1] == "0.8125"
  assert cells["validation @t"][column - 1] == cells["test @t"][column - 1] == "-"
  # One space at least between every cell, however wide the counts.
  assert all(len(c) == len(header) for c in cells.values())

"""The imbalance strategies: each one object, the only place that knows what a strategy does.

A strategy says four things, all from the training split's class counts [negatives, positives]
and the positives' share q (`--positive_fraction`):
  - the stream: the share of positive rows the training batches hold (None: the data's own);
  - the class weights [w_negative, w_positive] of the loss;
  - the output bias the model starts from;
  - the logit shift that turns the model's score back into the real-world probability.
Nothing else branches on a strategy's name.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def _log_odds(p: float) -> float:
  return math.log(p / (1.0 - p))


def _prior_log_odds(counts) -> float:
  neg, pos = (float(c) for c in counts)
  return math.log(pos / neg)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """Plain training: the data's own stream, unit weights, the data's prior as initial bias."""

  name: str = "baseline"
  help: str = "plain training on the data as it is"
  uses_share: bool = False  # Whether the positives' share changes what the strategy does.

  def stream_share(self, positive_fraction: float) -> float | None:
    """The expected share of positive rows in a training batch; None: the data's own."""
    return None

  def class_weights(self, counts, positive_fraction: float) -> np.ndarray:
    """[w_negative, w_positive] of the loss (float32)."""
    return np.ones(2, np.float32)

  def initial_bias(self, counts, positive_fraction: float) -> float:
    """The output bias the model starts from: the log odds of the base rate the loss sees, so
    the first steps do not spend themselves learning that fraud is rare (the tutorial's
    "careful bias" initialisation)."""
    return _prior_log_odds(counts)

  def logit_shift(self, counts, positive_fraction: float) -> float:
    """What to add to the model's logit so its probability is the real-world one."""
    return 0.0


@dataclasses.dataclass(frozen=True)
class ClassWeight(Strategy):
  """The positives carry the share q of the total loss weight and the negatives 1 - q:
  w_pos = q * total / pos, w_neg = (1 - q) * total / neg, so the loss keeps the scale of the
  unweighted one (q = 1/2 is the classic total / (2 * count)). A positive then counts
  (q / (1 - q)) * (neg / pos) legitimate rows: a few at q = 0.005 on the credit-card set,
  hundreds at 1/2."""

  name: str = "class_weight"
  help: str = ("per-class loss weights: the frauds carry the share --positive_fraction of the "
               "total weight")
  uses_share: bool = True

  def class_weights(self, counts, positive_fraction: float) -> np.ndarray:
    counts = np.asarray(counts, np.float64)
    shares = np.array([1.0 - positive_fraction, positive_fraction])
    return (shares * counts.sum() / counts).astype(np.float32)

  def initial_bias(self, counts, positive_fraction: float) -> float:
    # The base rate the weighted loss sees is the positives' share of the weight.
    return _log_odds(positive_fraction)

  def logit_shift(self, counts, positive_fraction: float) -> float:
    # The weighted loss is minimised by the real odds times w_pos / w_neg: subtract its log.
    # Monotone: no ranking changes, only log loss, Brier and the counts at a threshold.
    w_neg, w_pos = (float(w) for w in self.class_weights(counts, positive_fraction))
    return -math.log(w_pos / w_neg)


@dataclasses.dataclass(frozen=True)
class Oversample(Strategy):
  """Balanced batches: each holds the share q of positive rows in expectation, drawn with
  replacement (input_pipeline/datasets.py `balanced_mix`)."""

  name: str = "oversample"
  help: str = ("batches drawn so that the frauds are the share --positive_fraction of the "
               "rows")
  uses_share: bool = True

  def stream_share(self, positive_fraction: float) -> float | None:
    return positive_fraction

  def initial_bias(self, counts, positive_fraction: float) -> float:
    return _log_odds(positive_fraction)

  def logit_shift(self, counts, positive_fraction: float) -> float:
    # The stream's odds are the real odds times (q / (1 - q)) / (pi / (1 - pi)) for the real
    # base rate pi: subtracting that log undoes the shift when the model fits its stream.
    return _prior_log_odds(counts) - _log_odds(positive_fraction)


STRATEGIES = {s.name: s for s in (Strategy(), ClassWeight(), Oversample())}

# The positives' default share: this multiple of the training split's fraud rate, at most 1/2.
# Relative to the table, so a strategy never gives frauds less weight or fewer draws than plain
# training, whatever their rate; the multiple is the ratio of the share chosen on the
# credit-card set's validation split to that set's rate (BUILD.md, "Model quality").
SHARE_MULTIPLE = 3.0


def positive_share(counts, positive_fraction: float | None) -> float:
  """The positives' share q a run uses: `positive_fraction`, or by default SHARE_MULTIPLE times
  the training fraud rate (at most 1/2).

  Raises:
    ValueError: a `positive_fraction` below the training fraud rate: the strategy would weigh or
      draw the frauds less than plain training does.
  """
  neg, pos = (float(c) for c in counts)
  rate = pos / (neg + pos)
  if positive_fraction is None:
    return min(0.5, SHARE_MULTIPLE * rate)
  if positive_fraction < rate:
    raise ValueError(f"invalid --positive_fraction={positive_fraction!r}: below the training "
                     f"split's fraud rate {rate:.4g}, so frauds would count less than in plain "
                     "training; leave it out (default: "
                     f"{SHARE_MULTIPLE:g} x the rate) or pass at least {rate:.4g}")
  return positive_fraction


def get(name: str) -> Strategy:
  """The strategy `name`; KeyError naming the known ones if there is none."""
  if name not in STRATEGIES:
    raise KeyError(f"no strategy '{name}'; known: {', '.join(STRATEGIES)}")
  return STRATEGIES[name]

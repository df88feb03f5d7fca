"""A generated card-transaction table shaped like real fraud tables.

The credit-card set is all floats with no gaps and already in time order; real fraud tables are
not. This table gives tests string categories (skewed, with rare levels), gaps in numbers and
categories (one gap that is itself a signal), an integer-coded category, an ID column that must
not become a feature, and timestamps in shuffled file order with a category that appears only
late in time, so that a time-ordered split meets a level unseen in training.

The label comes from a logistic model of several columns plus noise, so no single column gives
it away while a good model reaches a test ROC-AUC of about 0.95 (average precision about 0.5)
on a time-ordered split, and a logistic regression on the raw columns about 0.94.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["transaction_id", "timestamp", "amount", "card_age_days", "distance_km",
           "merchant_category", "country", "device_type", "card_network", "mcc", "is_fraud"]
# The generators' column of each row's true fraud probability: for benchmarks to score an
# oracle with, never a feature.
TRUE_PROBABILITY = "true_probability"
# The merchants generator's column of each row's merchant risk (its own logit term), beside the
# true probability: for benchmarks/ceiling.py, never a feature.
TRUE_MERCHANT_RISK = "true_merchant_risk"
START = np.datetime64("2024-01-01T00:00:00", "s")
DAYS = 90
# ZZ is drawn only in the last 15% of the time range: under a 64/16/20 time split it never
# reaches the training rows, so the engine must cope with a level it has not seen.
LATE_FRACTION = 0.15
FRAUD_RATE = 0.02

# (level, share, logit): skewed shares with two rare levels (< 0.5%) and the risky ones
# (electronics, gaming, jewelry, crypto) carrying most of the category signal.
MERCHANTS = (
    ("grocery", 0.22, -1.0), ("restaurants", 0.16, -0.5), ("gas", 0.12, -0.5),
    ("retail", 0.12, 0.0), ("online_retail", 0.10, 0.9), ("travel", 0.06, 1.0),
    ("entertainment", 0.06, 0.0), ("pharmacy", 0.05, -0.9), ("electronics", 0.05, 2.2),
    ("gaming", 0.04, 2.4), ("jewelry", 0.004, 2.7), ("crypto", 0.003, 3.4),
)
# Each merchant category's usual MCC; a share of rows carries another code (aggregators,
# miscoded terminals), so the two columns overlap without being copies of each other.
HOME_MCC = {"grocery": 5411, "restaurants": 5812, "gas": 5541, "retail": 5311,
            "online_retail": 5999, "travel": 4511, "entertainment": 7832, "pharmacy": 5912,
            "electronics": 5732, "gaming": 7995, "jewelry": 5944, "crypto": 4829}
# (code, share among the off-home draws, logit): 7995 (gambling) and 4829 (money transfer) risky.
MCCS = ((5411, 0.20, -0.5), (5812, 0.15, 0.0), (5541, 0.10, 0.0), (5311, 0.10, 0.0),
        (5999, 0.15, 0.4), (4511, 0.05, 0.5), (7832, 0.05, 0.0), (5912, 0.05, 0.0),
        (5732, 0.05, 0.7), (7995, 0.05, 2.2), (5944, 0.02, 0.5), (4829, 0.03, 2.5))
OFF_HOME_MCC = 0.2
# (code, share, logit) before the late period; ZZ is added on top of these late on.
COUNTRIES = (("US", 0.55, 0.0), ("GB", 0.10, 0.3), ("DE", 0.08, 0.1), ("FR", 0.07, 0.1),
             ("CA", 0.09, 0.0), ("IN", 0.06, 0.8), ("BR", 0.05, 1.0))
ZZ_SHARE, ZZ_LOGIT = 0.05, 2.6  # 5% of late rows; about 4x the base fraud rate.
DEVICES = (("mobile", 0.6, 0.1), ("desktop", 0.3, -0.1), ("tablet", 0.1, 0.2))
NETWORKS = (("visa", 0.55), ("mastercard", 0.35), ("amex", 0.10))
# Legitimate traffic by hour of day, low at night; fraud is drawn from the same clock and made
# likelier at night by the logit, as card testing runs while the cardholder sleeps.
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 3, 4, 6, 7, 7, 8, 9, 8, 7, 7, 7, 8, 8, 8, 7, 6, 4, 3],
                        np.float64)
NIGHT_HOURS = (0, 1, 2, 3, 4, 5)


def _levels(rng: np.random.Generator, table, rows: int) -> np.ndarray:
  """Indices into `table` drawn by its shares (the second field of each entry)."""
  shares = np.array([entry[1] for entry in table], np.float64)
  return rng.choice(len(table), size=rows, p=shares / shares.sum())


def _with_gaps(rng: np.random.Generator, values: np.ndarray, rate: float) -> np.ndarray:
  """A copy of `values` (float or object) with a `rate` share of entries set to NaN."""
  out = values.astype(np.float64 if values.dtype.kind == "f" else object)
  out[rng.random(len(out)) < rate] = np.nan
  return out


def _intercept(logit: np.ndarray, rate: float) -> float:
  """The shift that makes the mean fraud probability `rate`, by Newton steps.

  Solving for it, rather than fixing a constant, keeps the positive share at `rate` whatever
  the coefficients, so tuning them does not move the class balance the tests rely on.
  """
  b = np.log(rate / (1 - rate)) - np.median(logit)
  for _ in range(30):
    p = 1 / (1 + np.exp(-(logit + b)))
    gap = p.mean() - rate
    if abs(gap) < 1e-10:
      break
    b -= gap / max((p * (1 - p)).mean(), 1e-12)
  return float(b)


def transactions(rows: int = 20_000, seed: int = 0, *,
                 true_probability: bool = False) -> pd.DataFrame:
  """A card-transaction table with string categories, gaps and shuffled timestamps.

  Columns (in this order): `transaction_id` ("tx0000123", unique, numbered in time order: an ID,
  not a feature), `timestamp` ("2024-03-05 14:22:31", 90 days from 2024-01-01, rows NOT in time
  order), `amount` (lognormal, ~3% NaN), `card_age_days` (~10% NaN), `distance_km` (~15% NaN;
  the gap itself raises fraud odds), `merchant_category` (12 skewed string levels, two rarer
  than 0.5%, ~2% NaN), `country` (7 codes, plus "ZZ" only in the last 15% of the time range,
  risky), `device_type` ("mobile"/"desktop"/"tablet", ~5% NaN), `card_network`
  ("visa"/"mastercard"/"amex"), `mcc` (12 int64 merchant codes, no gaps) and `is_fraud` (0/1,
  ~2% positives).

  The label is drawn from a logistic model of amount, card age, distance, the distance gap,
  merchant category, MCC, country, device and night hours, plus Gaussian noise; the fraud odds
  and the amounts drift up mildly over time. Gaps in amount and card age are at random: their
  hidden values still move the label. Deterministic in (rows, seed).

  Args:
    rows: number of transactions, at least 1.
    seed: seed of the random generator.
    true_probability: also return `true_probability`, the probability each row's label was
      drawn with (after `is_fraud`). It knows the noise and the values hidden by gaps, which no
      model sees: the AP it scores is a ceiling, not a target a model must reach. The draws are
      the same with and without it.

  Returns:
    A DataFrame with the columns above, one row per transaction.

  Raises:
    ValueError: if `rows` < 1.
  """
  if rows < 1:
    raise ValueError(f"rows must be at least 1, got {rows}")
  rng = np.random.default_rng(seed)

  # Time: a uniform day, an hour from the daily profile, uniform minutes and seconds. Draws are
  # independent, so the rows come out in random time order, as a shuffled file would.
  day = rng.integers(0, DAYS, rows)
  hour = rng.choice(24, size=rows, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
  second = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, rows)
  when = second / (DAYS * 86_400)  # Position in the time range, in [0, 1).

  # Numbers are drawn on the scale where their effect is near linear (log amount, log distance,
  # root card age), with moderate spreads: the engine sees the raw values (standardised, no
  # log), and they must stay close enough to those scales for a linear model, and so a small
  # network, to learn most of the signal from them.
  log_amount = rng.normal(3.6 + 0.15 * when, 0.9, rows)  # Median ~$37; drifts up ~16%.
  age_days = np.minimum(rng.gamma(2.0, 300.0, rows), 3_650.0)  # Median ~500 days, 10-year cap.
  log_distance = rng.normal(2.0, 1.0, rows)  # Median ~7 km.
  distance_gap = rng.random(rows) < 0.15

  merchant = _levels(rng, MERCHANTS, rows)
  merchant_names = np.array([m[0] for m in MERCHANTS], object)[merchant]
  home = np.array([HOME_MCC[m[0]] for m in MERCHANTS], np.int64)[merchant]
  mcc_codes = np.array([m[0] for m in MCCS], np.int64)
  mcc = np.where(rng.random(rows) < OFF_HOME_MCC, mcc_codes[_levels(rng, MCCS, rows)], home)
  mcc_index = np.searchsorted(np.sort(mcc_codes), mcc)
  mcc_logit = np.array([m[2] for m in MCCS])[np.argsort(mcc_codes)][mcc_index]

  country = _levels(rng, COUNTRIES, rows)
  country_names = np.array([c[0] for c in COUNTRIES], object)[country]
  country_logit = np.array([c[2] for c in COUNTRIES])[country]
  zz = (when >= 1 - LATE_FRACTION) & (rng.random(rows) < ZZ_SHARE)
  country_names[zz] = "ZZ"
  country_logit[zz] = ZZ_LOGIT

  device = _levels(rng, DEVICES, rows)
  network = _levels(rng, NETWORKS, rows)

  # The signal is spread over many columns with weights of 1-2 per standard deviation, so no
  # column alone scores a test ROC-AUC above ~0.8. The hinges (amounts and distances beyond one
  # standard deviation, cards younger than two months) give fraud a heavy tail of obvious
  # cases, as real fraud has: they are what lifts average precision to ~0.5 at a ROC-AUC of
  # ~0.95, and being convex in the log they suit models that see the raw values.
  z_amount = (log_amount - 3.6) / 0.9
  z_age = (np.sqrt(age_days) - 23.0) / 8.4  # Mean and spread of the root of Gamma(2, 300).
  z_distance = np.where(distance_gap, 0.0, log_distance - 2.0)
  logit = (
      1.2 * z_amount + 1.5 * np.maximum(z_amount - 1.0, 0.0)
      - 1.2 * z_age + 2.0 * (age_days < 60)
      + 1.4 * z_distance + 1.5 * np.maximum(z_distance - 1.0, 0.0)
      + 1.7 * distance_gap  # Hidden location (VPN, card-not-present): 1.2-1.8x the fraud rate.
      + np.array([m[2] for m in MERCHANTS])[merchant]
      + mcc_logit
      + country_logit
      + np.array([d[2] for d in DEVICES])[device]
      + 1.5 * np.isin(hour, NIGHT_HOURS)
      + 0.4 * when  # Drift: fraud odds grow ~50% over the quarter.
      + rng.normal(0.0, 0.3, rows))  # Noise that no column explains.
  logit += _intercept(logit, FRAUD_RATE)
  probability = 1 / (1 + np.exp(-logit))
  is_fraud = (rng.random(rows) < probability).astype(np.int64)

  # IDs follow time, as issuers number transactions; they must still not be a feature.
  order = np.argsort(second, kind="stable")
  number = np.empty(rows, np.int64)
  number[order] = np.arange(rows)
  timestamp = np.datetime_as_string(START + second.astype("timedelta64[s]"), unit="s")

  frame = pd.DataFrame({
      "transaction_id": [f"tx{n:07d}" for n in number],
      "timestamp": np.char.replace(timestamp, "T", " ").astype(object),
      "amount": _with_gaps(rng, np.round(np.exp(log_amount), 2), 0.03),
      "card_age_days": _with_gaps(rng, np.round(age_days, 1), 0.10),
      "distance_km": np.where(distance_gap, np.nan, np.round(np.exp(log_distance), 2)),
      "merchant_category": _with_gaps(rng, merchant_names, 0.02),
      "country": country_names,
      "device_type": _with_gaps(rng, np.array([d[0] for d in DEVICES], object)[device], 0.05),
      "card_network": np.array([n[0] for n in NETWORKS], object)[network],
      "mcc": mcc,
      "is_fraud": is_fraud,
  }, columns=COLUMNS)
  if true_probability:
    frame[TRUE_PROBABILITY] = probability
  return frame


# The second table, `merchants`: a different shape from `transactions` above.
MERCHANT_COLUMNS = ["transaction_id", "event_time", "merchant_id", "amount", "channel",
                    "tenure_days", "is_fraud"]
MERCHANT_START = int(np.datetime64("2024-03-01T00:00:00", "s").astype(np.int64))
MERCHANT_DAYS = 60
MERCHANT_COUNT = 5_000
MERCHANT_FRAUD_RATE = 0.015
# A merchant's popularity falls with its rank as 1 / (rank + offset)^power: a few large
# merchants carry much of the traffic and most merchants have a handful of rows, as in card
# networks, so a model must pool the rare ones.
POPULARITY_OFFSET, POPULARITY_POWER = 10.0, 1.1
# Compromised merchants (skimmers, breached web shops) carry a large risk of their own; the
# rest spread around zero.
COMPROMISED_SHARE, COMPROMISED_LOGIT, MERCHANT_RISK_SPREAD = 0.03, 3.5, 1.0
# (level, share, logit)
CHANNELS = (("chip", 0.45, -0.6), ("contactless", 0.25, -0.3), ("ecommerce", 0.25, 0.9),
            ("manual_entry", 0.05, 1.6))
# Legitimate traffic by hour of day (UTC), low at night.
MERCHANT_HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 1, 2, 4, 6, 7, 8, 8, 9, 8, 8, 7, 7, 8, 9, 9, 8, 6, 4, 3], np.float64)
MERCHANT_NIGHT = (0, 1, 2, 3, 4, 5)


def merchants(rows: int = 250_000, seed: int = 0, *,
              true_probability: bool = False) -> pd.DataFrame:
  """A table with a high-cardinality merchant column and an hour-of-day x amount interaction.

  Columns (in this order): `transaction_id` ("mt0000123", unique, in time order: an ID),
  `event_time` (int64 Unix seconds over 60 days from 2024-03-01 UTC, rows NOT in time order:
  a numeric time column, where `transactions` has date-time strings), `merchant_id`
  ("M01234", 5,000 merchants by a power-law popularity, most of them rare, each with a risk of
  its own), `amount` (log-normal around the merchant's usual ticket, ~4% gaps), `channel`
  (four string levels, ~2% gaps), `tenure_days` (the account's age, ~8% gaps), `is_fraud`
  (0/1, ~1.5% positives).

  The label is drawn from a logistic model of the observed values only: the merchant's risk,
  the amount against the merchant's usual ticket, the channel, the tenure, a gap in amount or
  tenure (each a signal of its own), and large amounts at night (hour 0-5 UTC of `event_time`),
  which are much riskier than either alone. There is no other noise, so `true_probability` is
  the best a model of these columns can score once it knows every merchant's risk; most
  merchants have too few rows for that, and benchmarks/ceiling.py measures the best score that
  can be learned from a split's rows. The hour is in `event_time` only: a model that does not
  derive it cannot see the interaction. Deterministic in (rows, seed).

  Args:
    rows: number of transactions, at least 1.
    seed: seed of the random generator.
    true_probability: also return `true_probability`, each row's fraud probability, and
      `true_merchant_risk`, its merchant's term of the logit (after `is_fraud`); the draws are
      the same with and without them.

  Returns:
    A DataFrame with the columns above, one row per transaction.

  Raises:
    ValueError: if `rows` < 1.
  """
  if rows < 1:
    raise ValueError(f"rows must be at least 1, got {rows}")
  rng = np.random.default_rng(seed)

  popularity = 1.0 / (np.arange(MERCHANT_COUNT) + POPULARITY_OFFSET) ** POPULARITY_POWER
  # Risk and usual ticket are drawn per merchant, independent of its popularity rank.
  compromised = rng.random(MERCHANT_COUNT) < COMPROMISED_SHARE
  merchant_risk = (rng.normal(0.0, MERCHANT_RISK_SPREAD, MERCHANT_COUNT)
                   + COMPROMISED_LOGIT * compromised)
  merchant_ticket = rng.normal(3.5, 0.7, MERCHANT_COUNT)  # log of the usual amount
  merchant = rng.choice(MERCHANT_COUNT, size=rows, p=popularity / popularity.sum())
  # IDs are shuffled against popularity, so the ID's number says nothing.
  names = np.array([f"M{k:05d}" for k in rng.permutation(MERCHANT_COUNT)], object)

  day = rng.integers(0, MERCHANT_DAYS, rows)
  hour = rng.choice(24, size=rows,
                    p=MERCHANT_HOUR_WEIGHTS / MERCHANT_HOUR_WEIGHTS.sum())
  second = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, rows)

  log_amount = rng.normal(merchant_ticket[merchant], 1.0)
  amount_gap = rng.random(rows) < 0.04
  channel = _levels(rng, CHANNELS, rows)
  channel_gap = rng.random(rows) < 0.02
  tenure = np.minimum(rng.gamma(1.5, 400.0, rows), 5_000.0)
  tenure_gap = rng.random(rows) < 0.08

  # Amounts count against the merchant's usual ticket (a large sale for a cafe is not one for
  # a jeweller); the night term is a hinge in that excess, so small night purchases are safe.
  excess = np.where(amount_gap, 0.0, log_amount - merchant_ticket[merchant])
  night = np.isin(hour, MERCHANT_NIGHT)
  z_tenure = np.where(tenure_gap, 0.0, (np.sqrt(tenure) - 22.0) / 10.0)
  logit = (merchant_risk[merchant]
           + 0.4 * excess
           + 3.0 * night * np.maximum(excess - 0.5, 0.0)
           + 0.3 * night
           + np.where(channel_gap, 0.5, np.array([c[2] for c in CHANNELS])[channel])
           - 0.8 * z_tenure
           + 0.8 * amount_gap + 0.6 * tenure_gap)
  logit += _intercept(logit, MERCHANT_FRAUD_RATE)
  probability = 1 / (1 + np.exp(-logit))
  is_fraud = (rng.random(rows) < probability).astype(np.int64)

  number = np.empty(rows, np.int64)
  number[np.argsort(second, kind="stable")] = np.arange(rows)
  frame = pd.DataFrame({
      "transaction_id": [f"mt{n:07d}" for n in number],
      "event_time": MERCHANT_START + second,
      "merchant_id": names[merchant],
      "amount": np.where(amount_gap, np.nan, np.round(np.exp(log_amount), 2)),
      "channel": np.where(channel_gap, None,
                          np.array([c[0] for c in CHANNELS], object)[channel]),
      "tenure_days": np.where(tenure_gap, np.nan, np.round(tenure, 1)),
      "is_fraud": is_fraud,
  }, columns=MERCHANT_COLUMNS)
  if true_probability:
    frame[TRUE_PROBABILITY] = probability
    frame[TRUE_MERCHANT_RISK] = merchant_risk[merchant]
  return frame


GENERATORS = {"transactions": transactions, "merchants": merchants}


if __name__ == "__main__":
  # python -m tests.transactions --rows=50000 --output=transactions.csv: a table to try the
  # column roles and the time split on (README). --table=merchants writes the second shape.
  import argparse
  parser = argparse.ArgumentParser(description="Writes a generated transaction table as CSV.")
  parser.add_argument("--table", choices=sorted(GENERATORS), default="transactions")
  parser.add_argument("--rows", type=int, default=50_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", default="transactions.csv")
  args = parser.parse_args()
  GENERATORS[args.table](args.rows, args.seed).to_csv(args.output, index=False)
  print(f"wrote {args.rows} rows to {args.output}")

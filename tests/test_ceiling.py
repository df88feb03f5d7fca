"""benchmarks/ceiling.py: the best probability of the merchants table learnable from its rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from benchmarks import ceiling, tables
from tests import transactions as generators


def _draw(risks, rows_each, seed=0):
  rng = np.random.default_rng(seed)
  merchant = np.repeat([f"M{k}" for k in range(len(risks))], rows_each)
  risk = np.repeat(risks, rows_each)
  offset = rng.normal(-4.0, 1.0, len(merchant))
  labels = (rng.random(len(merchant)) < special.expit(offset + risk)).astype(np.int64)
  return merchant, offset, labels, risk


def test_many_rows_learn_each_merchants_risk():
  merchant, offset, labels, risk = _draw([-1.0, 0.5, 4.0], 20_000)
  learn = np.arange(len(merchant))[np.arange(len(merchant)) % 2 == 0]
  score = np.arange(len(merchant))[np.arange(len(merchant)) % 2 == 1]
  p = ceiling.probability(merchant, offset, labels, learn, score)
  truth = special.expit(offset[score] + risk[score])
  # Thousands of rows a merchant: the posterior sits on the true risk.
  assert np.max(np.abs(p - truth) / truth) < 0.25
  # And the merchants are told apart from the prior's guess.
  prior_only = ceiling.probability(merchant, offset, labels, learn[:0], score)
  assert np.mean(np.abs(p - truth)) < 0.2 * np.mean(np.abs(prior_only - truth))


def test_an_unseen_merchant_gets_the_generators_prior():
  merchant, offset, labels, _ = _draw([0.0, 0.0], 50)
  score = np.array([0, 60])
  p = ceiling.probability(merchant, offset, labels, np.arange(0, 50), score)
  share, spread = generators.COMPROMISED_SHARE, generators.MERCHANT_RISK_SPREAD

  def density(r):
    return ((1 - share) * stats.norm.pdf(r, 0.0, spread)
            + share * stats.norm.pdf(r, generators.COMPROMISED_LOGIT, spread))
  expected = integrate.quad(lambda r: density(r) * special.expit(offset[60] + r), -15, 20)[0]
  assert p[1] == pytest.approx(expected, rel=1e-3)
  assert p[0] != pytest.approx(expected, rel=1e-3)  # The seen merchant's rows moved it.


def test_the_ceiling_lies_between_what_the_columns_and_the_oracle_know(tmp_path):
  table = tables.make("merchants", str(tmp_path), rows=60_000)
  split = tables.split(table, seed=0)
  y = split.labels(2)
  test = split.test_positions()
  p = table.ceiling(split)

  def log_loss(q):
    return -np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))
  oracle = table.true_probability[test]
  # Every merchant scored at the prior's risk: what the other columns alone know.
  frame = generators.merchants(60_000, 0, true_probability=True)
  offset = special.logit(oracle) - frame[generators.TRUE_MERCHANT_RISK].to_numpy()[test]
  no_merchant = ceiling.probability(np.zeros(len(test)), offset, np.zeros(len(test)),
                                    np.arange(0), np.arange(len(test)))
  assert log_loss(oracle) < log_loss(p) < log_loss(no_merchant)

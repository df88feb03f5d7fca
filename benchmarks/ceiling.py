"""The best fraud probability of the `merchants` table that can be learned from a split's rows.

The oracle (the true probability) knows each merchant's own risk, drawn for 5,000 merchants of
which most have a handful of rows; no model can learn a risk from so few labels. The ceiling
here is the Bayes predictor that knows everything else the generator does (the form of the
logit, every coefficient, each merchant's usual ticket) and must learn only the merchants'
risks, from the labels of the rows it is given:

  the posterior of a merchant's risk r, under the generator's own prior (ordinary merchants
  N(0, s), compromised ones N(c, s), in their shares) and the Bernoulli likelihood of that
  merchant's learning rows, each with the rest of its logit o_i known:
      log p(r | rows) = log prior(r) + sum_i [y_i log sigmoid(o_i + r) + (1 - y_i) log sigmoid(-(o_i + r))]
  on a grid of r; a scored row's probability is the posterior mean of sigmoid(o + r). A
  merchant with no learning rows gets the prior's.

It knows more than any model of the columns (the coefficients and tickets), so in expectation
no model scores above it: its AP is what the contenders can be held to, where the oracle's is
not. The benchmark gives it the training and validation rows, all the labels any contender sees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse, special, stats

# The merchant risk on a grid 0.025 apart, wider than the prior's mass (about -4 to 7).
GRID = np.linspace(-8.0, 12.0, 801)
CHUNK = 8192


def log_prior(grid: np.ndarray) -> np.ndarray:
  """The generator's prior of a merchant's risk at `grid`: the mixture of the two kinds."""
  from tests import transactions as g
  share, spread = g.COMPROMISED_SHARE, g.MERCHANT_RISK_SPREAD
  return np.logaddexp(stats.norm.logpdf(grid, 0.0, spread) + np.log1p(-share),
                      stats.norm.logpdf(grid, g.COMPROMISED_LOGIT, spread) + np.log(share))


def merchant_posterior(codes: np.ndarray, offset: np.ndarray, labels: np.ndarray,
                       merchants: int, grid: np.ndarray = GRID) -> np.ndarray:
  """Each merchant's posterior weights over `grid` (merchants x grid, rows sum to 1).

  `codes` are the learning rows' merchant numbers (0 to merchants - 1), `offset` their logit
  without the merchant's risk, `labels` their 0/1 labels.
  """
  loglik = np.zeros((merchants, len(grid)))
  for start in range(0, len(codes), CHUNK):
    part = slice(start, start + CHUNK)
    z = offset[part, None] + grid[None, :]
    # log sigmoid(z) for a fraud, log sigmoid(-z) for a legitimate row.
    ll = -np.logaddexp(0.0, np.where(labels[part, None] == 1, -z, z))
    rows = len(ll)
    member = sparse.csr_matrix((np.ones(rows), (codes[part], np.arange(rows))),
                               shape=(merchants, rows))
    loglik += member @ ll
  log_post = log_prior(grid)[None, :] + loglik
  return special.softmax(log_post, axis=1)


def probability(merchant: np.ndarray, offset: np.ndarray, labels: np.ndarray,
                learn: np.ndarray, score: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
  """The ceiling's fraud probability of the rows `score`, learned from the rows `learn`.

  Args:
    merchant: every row's merchant ID.
    offset: every row's logit without its merchant's risk.
    labels: every row's 0/1 label (only the `learn` rows' are read).
    learn, score: row positions into the arrays above.
  """
  codes, levels = pd.factorize(merchant)
  weights = merchant_posterior(codes[learn], offset[learn], labels[learn], len(levels), grid)
  out = np.empty(len(score))
  for start in range(0, len(score), CHUNK):
    rows = score[start:start + CHUNK]
    out[start:start + CHUNK] = np.sum(
        weights[codes[rows]] * special.expit(offset[rows, None] + grid[None, :]), axis=1)
  return out


def merchants_ceiling(frame: pd.DataFrame, true_probability: np.ndarray,
                      merchant_risk: np.ndarray):
  """A function of a split (benchmarks.tables.Split) to the ceiling's test-row probabilities,
  learned from its training and validation rows; `frame` is the generated table."""
  p = np.clip(true_probability, 1e-15, 1 - 1e-15)
  offset = special.logit(p) - merchant_risk
  merchant = frame["merchant_id"].to_numpy()
  labels = frame["is_fraud"].to_numpy()

  def test_probability(split) -> np.ndarray:
    learn = split.positions[split.split < 2]
    return probability(merchant, offset, labels, learn, split.test_positions())
  return test_probability

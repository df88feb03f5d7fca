"""tf.data pipelines: the training stream for each imbalance strategy, and evaluation sets.

All training streams are infinite; the loop counts steps. Rows are not shuffled one by one:
each pass over a class is a stateless permutation of its row indices (seeded by the seed and
the pass number), cut into chunks of row indices. Indices are cheap to move through tf.data;
the rows themselves are gathered once per batch from in-memory tensors.

`oversample` keeps `tf.data.Dataset.sample_from_datasets` as the mechanism that balances the
classes, but it mixes chunks of `oversample_chunk` rows of one class rather than single rows.
Element-wise mixing pays tf.data's per-element overhead for every row and capped the tutorial's
pipeline far below the training step's rate; mixing chunks does the same draw once per chunk.
Each chunk is all-positive with probability `positive_fraction` p and all-negative otherwise,
so the positive share of a batch is p on average (the per-batch spread grows with the chunk
size; tests check both).

An ensemble's element holds its K members' batches one after the other. Each draw then takes
K chunks' worth of rows of one class at once and deals them out, a chunk to each member: the
members' rows differ, their class pattern step by step is shared, and each member's batch is
drawn exactly as a single model's is. One draw per K chunks: the draws, not the rows, are what
the stream spends its time on, and per-member draws held an ensemble of 8 to the stream's rate
(BUILD.md, "Throughput").
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

# Passes over a class are numbered; this many is "forever" for any run.
_MAX_PASSES = 2**62


@dataclasses.dataclass(frozen=True)
class StreamSpec:
  """What one input pipeline's training stream is.

  batch_size: rows per element (the per-replica batch under tf.distribute): `members` batches
    one after the other.
  chunk: rows per single-class chunk that `sample_from_datasets` mixes (balanced streams only).
  seed: seeds every permutation and the class draw.
  positive_share: the expected share of positive rows in a batch, drawn with replacement
    (the strategy's `stream_share`); None: the data's own rows and share, without replacement.
  members: batches per element (an ensemble whose members train on rows of their own).
  pipeline_id, num_pipelines: this input pipeline and how many read the data (rows or shards
    are divided among them).
  skip: elements to skip, so a resumed run continues the exact stream it stopped in (the
    stream is a pure function of the seed).
  """

  batch_size: int
  chunk: int
  seed: int
  positive_share: float | None = None
  members: int = 1
  pipeline_id: int = 0
  num_pipelines: int = 1
  skip: int = 0


def _pass_seed(seed: int, stream: int) -> tf.Tensor:
  # Distinct streams (class, input pipeline) must draw independent permutations.
  return tf.constant(seed * 1_000_003 + stream, tf.int64)


def index_chunks(rows: np.ndarray, *, chunk: int, seed: int, stream: int) -> tf.data.Dataset:
  """Infinite dataset of int32 [chunk] vectors of entries of `rows`, shuffled each pass.

  Every pass is a fresh permutation; the last `len(rows) % chunk` of each pass are dropped
  (different ones each pass). A class smaller than one chunk is tiled first.
  """
  rows = tf.constant(np.asarray(rows, np.int32))
  n = int(rows.shape[0])
  reps = max(1, math.ceil(chunk / n))
  per_pass = (n * reps) // chunk
  base_seed = _pass_seed(seed, stream)

  def one_pass(p):
    idx = tf.tile(rows, [reps])
    idx = tf.random.experimental.stateless_shuffle(idx, seed=tf.stack([base_seed, p]))
    return tf.reshape(idx[:per_pass * chunk], [per_pass, chunk])

  return tf.data.Dataset.range(_MAX_PASSES).map(one_pass).unbatch()


def _gather_rows(x: tf.Tensor, y: tf.Tensor):
  def gather(idx):
    idx = tf.reshape(idx, [-1])
    return tf.gather(x, idx), tf.gather(y, idx)
  return gather


def balanced_mix(class_chunks, *, batch_size: int, chunk: int, seed: int, pipeline_id: int = 0,
                 positive_fraction: float = 0.5, members: int = 1) -> tf.data.Dataset:
  """Batches of single-class chunks, each positive with probability `positive_fraction`: the
  `oversample` mix.

  The one place both streams (in memory, and from prepared shards) balance their classes.

  Args:
    class_chunks: `class_chunks(label, rows)` returns the infinite dataset of chunks of `rows`
      rows of that class (row indices, or (features, labels) tensors).
    batch_size: rows per element: `members` batches of `batch_size // members` rows.
    chunk: rows per single-class chunk of one member's batch; cut to divide that batch.
    seed: the run seed.
    pipeline_id: this input pipeline's index; each pipeline draws its own sequence.
    positive_fraction: the expected share of positive chunks, so of positive rows.
    members: batches per element (an ensemble's members). One draw picks the class of one
      chunk of every member's batch, with different rows for each.

  Returns:
    Elements of `batch_size` rows, member by member (drop_remainder), not yet prefetched.
  """
  member_batch = batch_size // members
  chunk = math.gcd(chunk, member_batch)
  pos, neg = class_chunks(1, chunk * members), class_chunks(0, chunk * members)
  # Weights are normalised already (they sum to 1): a chunk is positive with probability p.
  weights = [positive_fraction, 1.0 - positive_fraction]
  mixed = tf.data.Dataset.sample_from_datasets([pos, neg], weights=weights,
                                               seed=seed * 7919 + pipeline_id)
  mixed = mixed.batch(member_batch // chunk, drop_remainder=True)
  if members == 1:
    return mixed

  def deal(t):
    # [draws, members * chunk, *row] -> member k's chunk of every draw, member after member.
    row = t.shape[2:].as_list()
    t = tf.reshape(t, [-1, members, chunk] + row)
    t = tf.transpose(t, [1, 0, 2] + list(range(3, 3 + len(row))))
    return tf.reshape(t, [batch_size] + row)

  # Row indices, or (features, labels) from prepared shards.
  return mixed.map(lambda *t: tuple(map(deal, t)) if len(t) > 1 else deal(t[0]))


def finish(ds: tf.data.Dataset, *, skip: int, map_fn=None) -> tf.data.Dataset:
  """The common tail of every training stream: skip to the resume point, map, prefetch.

  tf.data's default `map_parallelization` rewrite makes every map parallel, including the
  per-draw map inside `sample_from_datasets` and the per-pass shuffle: each draw then hops
  threads, which costs more than the draw itself. Off, the stream runs several times faster on
  a small CPU (benchmarks/throughput.py, BUILD.md); the maps worth parallelising (the gather of
  rows, the decode of records) ask for it themselves.
  """
  if skip:
    ds = ds.skip(skip)
  if map_fn is not None:
    ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.experimental_optimization.map_parallelization = False
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def train_dataset(x: np.ndarray, y: np.ndarray, spec: StreamSpec) -> tf.data.Dataset:
  """The infinite training stream of (features [batch, F] float32, labels [batch] int32).

  Args:
    x: scaled training features.
    y: 0/1 training labels.
    spec: what the stream is. Skipping happens on row indices, before any row is gathered, so
      it is cheap.

  Returns:
    An infinite, batched (drop_remainder), prefetched dataset.
  """
  rows = np.arange(len(y))[spec.pipeline_id::spec.num_pipelines]
  labels = np.asarray(y)[rows]
  gather = _gather_rows(tf.constant(x, tf.float32), tf.constant(y, tf.int32))
  stream = 2 * spec.pipeline_id
  if spec.positive_share is not None:
    ds = balanced_mix(
        lambda cls, c: index_chunks(rows[labels == cls], chunk=c, seed=spec.seed,
                                    stream=stream + cls),
        batch_size=spec.batch_size, chunk=spec.chunk, seed=spec.seed,
        pipeline_id=spec.pipeline_id, positive_fraction=spec.positive_share,
        members=spec.members)
  else:
    ds = index_chunks(rows, chunk=spec.batch_size, seed=spec.seed, stream=stream)
  return finish(ds, skip=spec.skip, map_fn=gather)

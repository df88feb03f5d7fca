import numpy as np
from tests.builders import spec
import pytest
import tensorflow as tf

from input_pipeline import datasets


def _take(ds, n):
  return [tuple(t.numpy() for t in item) for item in ds.take(n)]


def _data(rows=5000, positives=50):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((rows, 4)).astype(np.float32)
  y = np.zeros(rows, np.int64)
  y[rng.choice(rows, positives, replace=False)] = 1
  x[:, 0] = np.arange(rows)  # feature 0 = row id, to trace rows through the pipeline
  return x, y


@pytest.mark.parametrize("n,chunk", [(10, 3), (10, 10), (3, 8), (1, 4)])
def test_index_chunks_are_passes_over_the_rows(n, chunk):
  rows = np.arange(100, 100 + n)
  reps = -(-chunk // n)  # a class smaller than a chunk is tiled first
  per_pass = n * reps // chunk
  ds = datasets.index_chunks(rows, chunk=chunk, seed=0, stream=0)
  chunks = [c.numpy() for c in ds.take(per_pass * 6)]
  assert all(c.shape == (chunk,) for c in chunks)
  passes = [np.concatenate(chunks[i:i + per_pass]) for i in range(0, len(chunks), per_pass)]
  for p in passes:
    counts = np.bincount(p - 100, minlength=n)
    assert counts.max() <= reps  # no row twice within a pass (beyond the tiling)
    assert counts.sum() == per_pass * chunk  # only the remainder is dropped
  assert set(np.concatenate(passes).tolist()) == set(rows.tolist())
  if n > 1:
    assert any(not np.array_equal(passes[0], p) for p in passes[1:])  # a new order each pass


def test_baseline_stream_is_a_shuffled_pass_over_the_data():
  x, y = _data(rows=1000)
  ds = datasets.train_dataset(x, y, spec(strategy="baseline", batch_size=100, chunk=64, seed=0))
  first_pass = np.concatenate([b[0][:, 0] for b in _take(ds, 10)])
  assert sorted(first_pass.tolist()) == list(range(1000))  # every row once per pass
  assert not np.array_equal(first_pass[:100], np.arange(100))  # shuffled
  second_pass = np.concatenate([b[0][:, 0] for b in _take(ds.skip(10), 10)])
  assert not np.array_equal(first_pass, second_pass)  # reshuffled each pass


@pytest.mark.parametrize("chunk", [8, 64])
@pytest.mark.parametrize("positive_fraction", [0.5, 0.1, 0.02])
def test_oversample_positive_share_is_the_positive_fraction(chunk, positive_fraction):
  x, y = _data()
  batch, q = 512, positive_fraction
  ds = datasets.train_dataset(x, y, spec(strategy="oversample", batch_size=batch, chunk=chunk,
                                          seed=3, positive_fraction=q))
  shares = np.array([b[1].mean() for b in _take(ds, 400)])
  # Each batch holds batch/chunk single-class chunks, each positive with probability q.
  k = batch // chunk
  sd = np.sqrt(q * (1 - q) / k)
  assert abs(shares.mean() - q) < 4 * sd / np.sqrt(len(shares))
  assert 0.5 * sd < shares.std() < 1.5 * sd
  # Labels match the gathered rows.
  for features, labels in _take(ds, 5):
    assert np.array_equal(y[features[:, 0].astype(int)], labels)


def test_oversample_chunks_are_single_class():
  x, y = _data()
  ds = datasets.train_dataset(x, y, spec(strategy="oversample", batch_size=256, chunk=32, seed=0))
  for _, labels in _take(ds, 20):
    per_chunk = labels.reshape(-1, 32)
    assert np.all((per_chunk.min(axis=1) == per_chunk.max(axis=1)))


@pytest.mark.parametrize("strategy", ["baseline", "oversample"])
def test_skip_replays_the_same_stream(strategy):
  x, y = _data()
  kw = dict(strategy=strategy, batch_size=256, chunk=32, seed=5)
  full = _take(datasets.train_dataset(x, y, spec(**kw)), 12)
  resumed = _take(datasets.train_dataset(x, y, spec(skip=7, **kw)), 5)
  for a, b in zip(full[7:], resumed):
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
  other_seed = _take(datasets.train_dataset(x, y, spec(**dict(kw, seed=6))), 1)
  assert not np.array_equal(full[0][0], other_seed[0][0])


def test_pipelines_shard_rows():
  x, y = _data(rows=1000)
  seen = []
  for pid in (0, 1):
    ds = datasets.train_dataset(x, y, spec(strategy="baseline", batch_size=100, chunk=64, seed=0,
                                pipeline_id=pid, num_pipelines=2))
    seen.append(set(np.concatenate([b[0][:, 0] for b in _take(ds, 5)]).astype(int).tolist()))
  assert not seen[0] & seen[1]
  assert len(seen[0] | seen[1]) == 1000


def test_train_batches_have_static_shapes():
  x, y = _data()
  for strategy in ("baseline", "oversample"):
    ds = datasets.train_dataset(x, y, spec(strategy=strategy, batch_size=256, chunk=64, seed=0))
    assert ds.element_spec[0].shape == (256, 4)
    assert ds.element_spec[1].shape == (256,)
    assert ds.element_spec[1].dtype == tf.int32


def test_an_ensembles_oversampled_element_deals_each_draw_to_every_member():
  # An element is K member batches one after the other; each draw gives every member one
  # single-class chunk of its own rows, and each member's batch is balanced as a single
  # model's is (same share, same spread: one class draw per chunk of its batch).
  x, y = _data()
  members, batch, chunk = 3, 128, 16
  kw = dict(strategy="oversample", batch_size=members * batch, chunk=chunk, seed=3,
            members=members)
  ds = datasets.train_dataset(x, y, spec(**kw))
  assert ds.element_spec[0].shape == (members * batch, 4)
  assert ds.element_spec[1].shape == (members * batch,)
  elements = _take(ds, 300)
  for features, labels in elements[:5]:
    assert np.array_equal(y[features[:, 0].astype(int)], labels)
    chunks = labels.reshape(members, batch // chunk, chunk)
    assert np.all(chunks.min(axis=2) == chunks.max(axis=2))  # whole chunks of one class
    assert np.all(chunks[:, :, 0] == chunks[:1, :, 0])  # a draw's class, shared by the members
    rows = features[:, 0].reshape(members, batch)
    assert len(np.unique(rows[:, labels.reshape(members, batch)[0] == 0])) == (
        members * int((labels.reshape(members, batch)[0] == 0).sum()))  # their own rows
  shares = np.array([l.reshape(members, batch).mean(axis=1) for _, l in elements])
  sd = np.sqrt(0.25 / (batch // chunk))
  for k in range(members):
    assert abs(shares[:, k].mean() - 0.5) < 4 * sd / np.sqrt(len(shares))
    assert 0.5 * sd < shares[:, k].std() < 1.5 * sd
  resumed = _take(datasets.train_dataset(x, y, spec(skip=7, **kw)), 2)
  for a, b in zip(elements[7:9], resumed):
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_one_member_draws_exactly_the_single_models_stream():
  # The single model's oversampled stream, built by hand as it was before ensembles shared
  # their draws: one sample_from_datasets draw per chunk, batched. It must not have moved
  # (resumed runs replay it; the measured defaults were chosen on it).
  x, y = _data()
  batch, chunk, seed = 256, 32, 5
  rows = np.arange(len(y))
  pos, neg = (datasets.index_chunks(rows[y == c], chunk=chunk, seed=seed, stream=c)
              for c in (1, 0))
  by_hand = tf.data.Dataset.sample_from_datasets([pos, neg], weights=[0.5, 0.5],
                                                 seed=seed * 7919).batch(batch // chunk)
  stream = datasets.train_dataset(x, y, spec(strategy="oversample", batch_size=batch, chunk=chunk,
                                  seed=seed, members=1))
  for idx, (features, labels) in zip(by_hand.take(6), _take(stream, 6)):
    idx = idx.numpy().reshape(-1)
    assert np.array_equal(features, x[idx]) and np.array_equal(labels, y[idx])

"""--mode=prepare and --prepared_dir: the hash split, streaming statistics, records, streams."""

from __future__ import annotations

from tests.builders import spec
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import read_json, run_main, small_frame
from engine.config import Config
from input_pipeline import columns, prepare, prepared, preprocessing
from input_pipeline.errors import DataError


def _config(path, **kw) -> Config:
  return Config(data_path=str(path), **{"prepare_chunk_rows": 700, "prepare_shards": 4, **kw})


# The credit-card set's features: V1-V28, Log Amount, and the four hour and weekday features of
# its Time column.
FEATURES = 33


@pytest.fixture
def prepared_dir(tmp_path):
  frame = small_frame(rows=3000, positives=90, seed=2)
  csv = tmp_path / "data.csv"
  frame.to_csv(csv, index=False)
  out = tmp_path / "prepared"
  prepare.prepare(_config(csv), str(out))
  return frame, csv, str(out)


def _records(directory: str, names: list[str]) -> list[bytes]:
  return [r.numpy() for r in tf.data.TFRecordDataset([os.path.join(directory, n) for n in names])]


def _decode(directory: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
  x, y = prepared.decode_blocks(tf.constant(_records(directory, names)), FEATURES)
  return x.numpy(), y.numpy()


def test_split_is_a_pure_function_of_row_seed_and_fractions():
  rows = np.arange(200_000)
  kw = dict(validation_fraction=0.16, test_fraction=0.2)
  split = prepare.assign_splits(rows, seed=0, **kw)
  # Any chunking gives the same split: each row's split depends on its number only.
  chunked = np.concatenate([prepare.assign_splits(rows[i:i + 777], seed=0, **kw)
                            for i in range(0, len(rows), 777)])
  np.testing.assert_array_equal(split, chunked)
  shares = np.bincount(split, minlength=3) / len(rows)
  np.testing.assert_allclose(shares, [0.64, 0.16, 0.20], atol=0.005)
  assert (prepare.assign_splits(rows, seed=1, **kw) != split).mean() > 0.3


@pytest.mark.parametrize("chunk", [1, 7, 1000, 5000])
def test_running_moments_equal_numpy(chunk):
  x = np.random.default_rng(0).normal(1e4, 3.0, size=(3000, 4))  # large mean: cancellation-prone
  x[np.random.default_rng(1).random(x.shape) < 0.1] = np.nan  # gaps are skipped, per column
  x[:, 3] = np.where(np.arange(3000) < 2000, np.nan, x[:, 3])  # whole chunks of gaps
  m = prepare.RunningMoments()
  for i in range(0, len(x), chunk):
    m.update(x[i:i + chunk])
  np.testing.assert_array_equal(m.count, (~np.isnan(x)).sum(axis=0))
  np.testing.assert_allclose(m.mean, np.nanmean(x, axis=0), rtol=1e-12)
  np.testing.assert_allclose(m.std(), np.nanstd(x, axis=0), rtol=1e-9)


@pytest.mark.parametrize("rows,features", [(1, 1), (5, 29), (300, 300)])
def test_encoded_blocks_are_the_examples_protobuf_writes(rows, features):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((rows, features)).astype(np.float32)  # 300x300: multi-byte lengths
  y = rng.integers(0, 2, rows)
  expected = tf.train.Example(features=tf.train.Features(feature={
      "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.astype("<f4").tobytes()])),
      "y": tf.train.Feature(bytes_list=tf.train.BytesList(value=[y.astype(np.uint8).tobytes()]))}))
  assert tf.train.Example.FromString(prepared.encode_block(x, y)) == expected


def test_blocks_of_any_length_decode_to_their_rows_eagerly_and_in_a_dataset():
  rng = np.random.default_rng(1)
  sizes = [256, 3, 1, 40]  # a full block, and short ones like the last block of a shard
  x = rng.standard_normal((sum(sizes), 29)).astype(np.float32)
  y = rng.integers(0, 2, sum(sizes))
  ends = np.cumsum(sizes)
  blocks = tf.constant([prepared.encode_block(x[e - n:e], y[e - n:e])
                        for n, e in zip(sizes, ends)])
  eager = prepared.decode_blocks(blocks, 29)
  mapped = next(iter(tf.data.Dataset.from_tensors(blocks).map(
      lambda b: prepared.decode_blocks(b, 29))))
  for got_x, got_y in (eager, mapped):
    np.testing.assert_array_equal(got_x.numpy(), x)
    np.testing.assert_array_equal(got_y.numpy(), y)
    assert got_y.dtype == tf.int32


def test_prepared_features_equal_the_in_memory_preprocessing(prepared_dir):
  frame, _, out = prepared_dir
  meta = read_json(os.path.join(out, prepared.METADATA_FILE))
  # The statistics are those of the hash split's training rows, cleaned the in-memory way.
  roles = columns.assign_roles(frame, Config())
  rows = columns.read_rows(frame, roles, drop_invalid_rows=False)
  labels = rows.labels
  pre = preprocessing.unfitted_preprocessor(roles, Config())
  cleaned = pre.clean(rows.numeric, rows.times)
  split = prepare.assign_splits(np.arange(len(frame)), seed=0, validation_fraction=0.16,
                                 test_fraction=0.2)
  np.testing.assert_allclose(meta["preprocessing"]["mean"], cleaned[split == 0].mean(axis=0),
                             rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(meta["preprocessing"]["scale"], cleaned[split == 0].std(axis=0),
                             rtol=1e-9)
  assert meta["counts"]["test"] == {"rows": int((split == 2).sum()),
                                    "positives": int(labels[split == 2].sum())}
  # Records (parsed inside tf.data) equal the saved Preprocessor applied eagerly to raw rows.
  fitted = preprocessing.Preprocessor(**meta["preprocessing"])
  x, y = _decode(out, meta["files"]["test"])
  want = fitted(frame[split == 2])
  order = np.lexsort(x.T), np.lexsort(want.T)
  np.testing.assert_array_equal(x[order[0]], want[order[1]])
  np.testing.assert_array_equal(y[order[0]], labels[split == 2][order[1]])
  # Train shards are per class, filled round-robin.
  assert meta["shard_counts"]["train"]["1"] == [15, 15, 14, 14] or \
      max(meta["shard_counts"]["train"]["1"]) - min(meta["shard_counts"]["train"]["1"]) <= 1
  _, y1 = _decode(out, meta["files"]["train"]["1"])
  assert set(y1.tolist()) == {1}
  # Every record is a full block but the last of its shard; the shards hold their counted rows.
  for name, count in zip(meta["files"]["train"]["0"], meta["shard_counts"]["train"]["0"]):
    sizes = [len(prepared.decode_blocks(tf.constant([r]), FEATURES)[1])
             for r in _records(out, [name])]
    assert sizes == [prepared.BLOCK_ROWS] * (count // prepared.BLOCK_ROWS) + (
        [count % prepared.BLOCK_ROWS] if count % prepared.BLOCK_ROWS else [])
  assert meta["block_rows"] == prepared.BLOCK_ROWS and max(
      meta["shard_counts"]["train"]["0"]) > prepared.BLOCK_ROWS  # so a shard has 2+ blocks


def test_chunk_size_does_not_change_the_result(prepared_dir, tmp_path):
  _, csv, out = prepared_dir
  other = tmp_path / "other"
  prepare.prepare(_config(csv, prepare_chunk_rows=3000), str(other))
  a = read_json(os.path.join(out, prepared.METADATA_FILE))
  b = read_json(other / prepared.METADATA_FILE)
  assert a["counts"] == b["counts"] and a["shard_counts"] == b["shard_counts"]
  np.testing.assert_allclose(a["preprocessing"]["scale"], b["preprocessing"]["scale"], rtol=1e-12)


def test_prepare_refuses_to_overwrite_and_bad_input(prepared_dir, tmp_path):
  _, csv, out = prepared_dir
  with pytest.raises(DataError, match="already holds a prepared set; pass --fresh"):
    prepare.prepare(_config(csv), out)
  bad = tmp_path / "bad.csv"
  bad.write_text("a,Class\n1,0\nx,1\n")
  with pytest.raises(DataError, match="feature column 'a' holds 1 value.*not numbers, e.g. 'x' "
                     "in data row 1"):
    prepare.prepare(_config(bad), str(tmp_path / "p2"))
  one_class = tmp_path / "one.csv"
  small_frame(rows=200, positives=0).to_csv(one_class, index=False)
  with pytest.raises(DataError, match="has no rows of class 1"):
    prepare.prepare(_config(one_class), str(tmp_path / "p3"))
  assert not os.path.exists(tmp_path / "p3" / prepared.METADATA_FILE)
  with pytest.raises(DataError, match="holds no metadata.json"):
    prepared.PreparedData.open(str(tmp_path / "p3"))


def test_a_directory_of_another_format_is_refused(prepared_dir):
  _, _, out = prepared_dir
  path = os.path.join(out, prepared.METADATA_FILE)
  meta = read_json(path)
  meta["format_version"] = 1  # one row per record, as written before blocks
  with open(path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(DataError, match="format_version 1; this engine reads 3: prepare the data "
                                      "again"):
    prepared.PreparedData.open(out)


@pytest.mark.parametrize("buffer", [prepared.SHUFFLE_BUFFER, 300])
def test_oversampled_stream_is_balanced_static_and_resumable(prepared_dir, monkeypatch, buffer):
  # The default buffer caches both classes of this small set; 300 rows streams the negatives
  # from the files at every pass, as a large set does.
  monkeypatch.setattr(prepared, "SHUFFLE_BUFFER", buffer)
  _, _, out = prepared_dir
  data = prepared.PreparedData.open(out)
  kw = dict(strategy="oversample", batch_size=128, chunk=16, seed=3)
  ds = data.train_dataset(spec(**kw))
  assert [s.shape.as_list() for s in ds.element_spec] == [[128, FEATURES], [128]]
  batches = [(x.numpy(), y.numpy()) for x, y in ds.take(40)]
  # Each batch is 8 single-class chunks, each positive with probability 1/2: bound the share by
  # the number of chunk draws (4 standard deviations), as the in-memory test does. Enough draws
  # that a stream mixing positives at 0.45 fails (0.05 off is > 4 sd at 3200 draws).
  shares = [y.mean() for _, y in ds.take(400).as_numpy_iterator()]
  draws = 400 * 8
  assert abs(float(np.mean(shares)) - 0.5) < 4 * np.sqrt(0.25 / draws)
  # Chunks are of one class, and rows are mixed: a chunk holds rows of several blocks (the
  # blocks are fixed at prepare time; the row permutation is what mixes them).
  chunks = np.stack([y.reshape(8, 16) for _, y in batches])
  assert np.all(chunks.min(axis=2) == chunks.max(axis=2))
  block_of = {}
  for i, record in enumerate(_records(out, data.metadata["files"]["train"]["0"])):
    for row in prepared.decode_blocks(tf.constant([record]), FEATURES)[0].numpy():
      block_of[row.tobytes()] = i
  blocks_per_chunk = [len({block_of[r.tobytes()] for r in x[c * 16:(c + 1) * 16]})
                      for x, y in batches for c in range(8) if y[c * 16] == 0]
  assert np.mean(blocks_per_chunk) > 3
  # skip=k replays the seeded stream: a resumed run continues where it stopped.
  resumed = next(iter(data.train_dataset(spec(**kw, skip=5))))
  np.testing.assert_array_equal(resumed[0].numpy(), batches[5][0])
  np.testing.assert_array_equal(resumed[1].numpy(), batches[5][1])


def test_an_ensembles_oversampled_stream_deals_chunks_to_its_members(prepared_dir):
  _, _, out = prepared_dir
  data = prepared.PreparedData.open(out)
  ds = data.train_dataset(spec(strategy="oversample", batch_size=3 * 64, chunk=16, seed=3, members=3))
  assert [s.shape.as_list() for s in ds.element_spec] == [[192, FEATURES], [192]]
  for x, y in ds.take(20).as_numpy_iterator():
    chunks = y.reshape(3, 4, 16)
    assert np.all(chunks.min(axis=2) == chunks.max(axis=2))
    assert np.all(chunks[:, :, 0] == chunks[:1, :, 0])
    rows = x.reshape(3, 64, FEATURES)
    assert not np.array_equal(rows[0], rows[1])


@pytest.mark.parametrize("buffer", [prepared.SHUFFLE_BUFFER, 300])
def test_stream_reaches_every_training_row(prepared_dir, monkeypatch, buffer):
  # Short blocks (each shard's last) are rebatched, not dropped: every row comes round.
  monkeypatch.setattr(prepared, "SHUFFLE_BUFFER", buffer)
  _, _, out = prepared_dir
  data = prepared.PreparedData.open(out)
  x, _ = _decode(out, data.metadata["files"]["train"]["0"] + data.metadata["files"]["train"]["1"])
  assert len(x) == data.counts()["train"]["rows"]
  ds = data.train_dataset(spec(strategy="baseline", batch_size=200, chunk=16, seed=1))
  seen = {row.tobytes() for b, _ in ds.take(100) for row in b.numpy()}
  assert seen == {row.tobytes() for row in x}


def test_input_pipelines_read_disjoint_shards(prepared_dir):
  _, _, out = prepared_dir
  data = prepared.PreparedData.open(out)
  seen = []
  for pipeline in (0, 1):
    ds = data.train_dataset(spec(strategy="baseline", batch_size=200, chunk=16, seed=0,
                            pipeline_id=pipeline, num_pipelines=2))
    seen.append({tuple(row) for x, _ in ds.take(10) for row in x.numpy().round(5).tolist()})
  assert seen[0] and seen[1] and not seen[0] & seen[1]
  with pytest.raises(DataError, match="input pipeline 4 of 5 has no training rows"):
    data.train_dataset(spec(strategy="oversample", batch_size=128, chunk=16, seed=0, pipeline_id=4,
                       num_pipelines=5))


def test_predictions_score_every_row_of_a_split_once(prepared_dir):
  _, _, out = prepared_dir
  data = prepared.PreparedData.open(out)
  n = data.counts()["validation"]["rows"]
  y, logits = data.predictions("validation", lambda x: tf.reduce_sum(x, axis=1).numpy())
  assert len(y) == len(logits) == n and y.sum() == data.counts()["validation"]["positives"]
  x, y_files = _decode(out, data.metadata["files"]["validation"])
  np.testing.assert_allclose(np.sort(logits), np.sort(x.sum(axis=1)), atol=1e-4)
  assert y.sum() == y_files.sum()


def test_prepare_then_train_from_shards(tmp_path):
  csv = tmp_path / "data.csv"
  small_frame(rows=3000, positives=90, seed=2).to_csv(csv, index=False)
  out = tmp_path / "prepared"
  proc = run_main("--mode=prepare", f"--data_path={csv}", f"--output_dir={out}",
                  "--prepare_shards=2", "--prepare_chunk_rows=500", timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert os.path.exists(out / prepared.METADATA_FILE)
  import engine
  config = Config(prepared_dir=str(out), strategy="oversample", epochs=2, steps_per_epoch=10,
                  batch_size=128, eval_batch_size=512, learning_rate=0.05, dropout=0.0)
  results = engine.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["steps"] == 20
  assert results["data"]["test"] == read_json(out / prepared.METADATA_FILE)["counts"]["test"]
  assert results["test"]["auc"] > 0.9  # separable data: the streamed features carry the signal
  assert os.listdir(tmp_path / "run" / "checkpoints")

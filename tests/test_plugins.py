"""The plug-in points: a model and a loss are each one new file, found by name.

The end-to-end case is the contract's own check: in a copy of the repository, one new file
under engine/models/ and one under engine/losses/, nothing else changed, train, export and
predict through the export.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from engine import models
from engine.config import Config, ConfigError
from input_pipeline import layout as layout_lib
from tests.builders import logits
from tests.conftest import ROOT

DENSE_MODEL = '''
import keras


def build(layout, config):
  """A single Dense(1) layer: logistic regression."""
  layer = keras.layers.Dense(1)
  layer.build((None, layout.num_features))
  return layer
'''

SQUARED_LOSS = '''
import tensorflow as tf


def per_example(labels, logits):
  """Squared error of the sigmoid."""
  return tf.square(tf.sigmoid(logits) - tf.cast(labels, logits.dtype))
'''


def test_a_new_model_and_loss_are_one_file_each(tmp_path):
  repo = tmp_path / "repo"
  for name in ("engine", "input_pipeline"):
    shutil.copytree(os.path.join(ROOT, name), repo / name,
                    ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(os.path.join(ROOT, "main.py"), repo / "main.py")
  (repo / "engine" / "models" / "logreg.py").write_text(DENSE_MODEL)
  (repo / "engine" / "losses" / "squared.py").write_text(SQUARED_LOSS)

  def run(*flags):
    return subprocess.run([sys.executable, "main.py", *flags], cwd=repo, capture_output=True,
                          text=True, timeout=300)

  trained = run("--dataset=synthetic", "--synthetic_rows=20000", "--model=logreg",
                "--loss=squared", "--epochs=2", "--steps_per_epoch=5", "--model_dir=run")
  assert trained.returncode == 0, trained.stderr
  frame = pd.DataFrame(np.random.default_rng(0).standard_normal((50, 30)),
                       columns=["Time"] + [f"V{i}" for i in range(1, 29)] + ["Amount"])
  frame["Amount"] = frame["Amount"].abs()
  frame.to_csv(repo / "new.csv", index=False)
  scored = run("--mode=predict", "--export_dir=run/export", "--data_path=new.csv",
               "--output=scores.csv")
  assert scored.returncode == 0, scored.stderr
  scores = pd.read_csv(repo / "scores.csv")
  assert len(scores) == 50 and scores["probability"].between(0, 1).all()
  config = (repo / "run" / "config.json").read_text()
  assert '"model": "logreg"' in config and '"loss": "squared"' in config


def test_the_model_and_loss_are_validated_by_name():
  with pytest.raises(ConfigError, match="--model='nope'.*mlp"):
    Config(model="nope")
  with pytest.raises(ConfigError, match="--loss='nope'.*bce"):
    Config(loss="nope")


def test_a_family_without_a_bias_of_its_own_gets_the_engines():
  class Two(tf.keras.layers.Layer):  # [B, F] -> [B, 2], no bias
    def build(self, shape):
      self.w = self.add_weight(shape=(shape[-1], 2), initializer="zeros")

    def call(self, x):
      return tf.matmul(x, self.w)

  layout = layout_lib.numeric_only(3)
  config = Config()
  module = type("module", (), {"build": staticmethod(lambda layout, config: Two())})
  original = models.family
  models.family = lambda name: module
  try:
    model = models.build(config, layout, output_bias=-2.0)
  finally:
    models.family = original
  assert model.members == 2 and not model.own_rows
  np.testing.assert_allclose(logits(model, tf.zeros([4, 3])), -2.0)
  assert logits(model, tf.zeros([4, 3])).shape == (2, 4)  # member-major inside the engine


def test_the_layout_names_every_position():
  from input_pipeline import preprocessing
  from tests.conftest import small_frame
  frame = small_frame(600, 30, seed=1)
  frame["shop"] = np.where(np.arange(600) % 3 == 0, "a", "b")
  frame.loc[::7, "V1"] = np.nan
  config = Config(categorical_columns=("shop",), min_category_count=1)
  splits = preprocessing.split_and_encode(frame, config)
  layout = layout_lib.from_preprocessor(splits.preprocessor, splits.x_train)
  assert layout.num_features == splits.num_features
  names = splits.preprocessor.output_names()
  assert all(" missing" in names[i] for i in layout.missing_flags) and layout.missing_flags
  (block,) = layout.categorical
  assert block.name == "shop" and block.cardinality == 4  # other, missing, a, b
  assert all(names[block.offset + j].startswith("shop=") for j in range(block.cardinality))
  assert [names[i] for i in layout.numeric] == list(splits.preprocessor.numeric_features)
  q = layout.quantiles
  assert q.shape == (len(layout.numeric), layout_lib.QUANTILES)
  assert (np.diff(q, axis=1) >= 0).all()
  np.testing.assert_allclose(q[:, 0], splits.x_train[:, list(layout.numeric)].min(axis=0))

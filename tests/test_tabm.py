"""--model=tabm: the contract (shape, bias, members sharing weights), each architecture and
embedding trains, the first layer's members differ, and a run exports and predicts."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from engine import losses, models
from engine.config import Config
from engine.metrics import Metrics
from engine.step import make_train_loop
from input_pipeline import datasets
from input_pipeline.layout import QUANTILES, CategoricalBlock, FeatureLayout
from tests.builders import logits, spec
from tests.conftest import read_json, run_main


def _data(rows=2000, seed=0):
  """4 numeric features (one with ties), a missing flag, a one-hot block of 2; separable."""
  rng = np.random.default_rng(seed)
  numeric = rng.normal(size=(rows, 4)).astype(np.float32)
  numeric[:, 3] = np.round(numeric[:, 3])
  block = np.eye(2, dtype=np.float32)[rng.integers(0, 2, rows)]
  x = np.concatenate([numeric, rng.integers(0, 2, (rows, 1)).astype(np.float32), block], 1)
  y = (x[:, 0] + 2 * x[:, 5] > 1.5).astype(np.int64)
  layout = FeatureLayout(num_features=7, numeric=(0, 1, 2, 3), missing_flags=(4,),
                         categorical=(CategoricalBlock("c", 2, 5),), train_rows=x)
  assert layout.quantiles.shape == (4, QUANTILES)
  return x, y, layout


@pytest.mark.parametrize("arch,embeddings,transform", [
    ("tabm", "none", "none"), ("tabm", "periodic", "none"), ("tabm", "piecewise_linear", "none"),
    ("tabm-mini", "none", "quantile_normal"), ("tabm-packed", "periodic", "none")])
def test_each_architecture_trains_as_one_model_of_k_members(arch, embeddings, transform):
  x, y, layout = _data()
  config = Config(model="tabm", tabm_arch=arch, num_embeddings=embeddings,
                  input_transform=transform, ensemble=4, hidden_units=(16, 8), dropout=0.1,
                  d_embedding=4, n_frequencies=3, n_bins=8, batch_size=256, strategy="baseline")
  model = models.build(config, layout, output_bias=-2.0)
  assert model.members == 4 and not model.own_rows
  assert np.allclose(model.output_bias.numpy(), -2.0)
  first = logits(model, x[:64])
  assert first.shape == (4, 64)
  assert np.ptp(first, axis=0).max() > 1e-4  # the members differ from the start
  optimizer = tf.keras.optimizers.Adam(1e-2)
  optimizer.build(model.trainable_variables)
  metrics = Metrics()
  loop = make_train_loop(model=model, optimizer=optimizer, strategy=tf.distribute.get_strategy(),
                         metrics=metrics, class_weights=np.ones(2, np.float32),
                         global_batch_size=256, seed=0, per_example=losses.per_example_fn("bce"))
  stream = iter(datasets.train_dataset(x, y, spec(batch_size=256, chunk=64, seed=0)))
  variables = len(model.variables)
  loop(stream, tf.constant(5))
  early = metrics.result()["loss"]
  metrics.reset()
  loop(stream, tf.constant(60))
  loop(stream, tf.constant(5))
  assert metrics.result()["loss"] < early / 2
  assert len(model.variables) == variables  # nothing created after build


def test_a_tabm_run_trains_exports_and_predicts(tmp_path):
  model_dir = str(tmp_path / "run")
  proc = run_main("--dataset=synthetic", "--synthetic_rows=20000", "--model=tabm",
                  "--ensemble=4", "--hidden_units=16,16", "--epochs=2", "--steps_per_epoch=5",
                  f"--model_dir={model_dir}")
  assert proc.returncode == 0, proc.stderr
  results = read_json(os.path.join(model_dir, "results.json"))
  assert results["weights"]["which"] in ("best", "last") and "members" not in results
  assert os.path.exists(os.path.join(model_dir, "export", "saved_model.pb"))


@pytest.mark.parametrize("numeric,expected", [(4, "piecewise_linear"), (16, "piecewise_linear"),
                                               (17, "none"), (33, "none"), (0, "none")])
def test_auto_embeds_the_features_of_a_narrow_table_only(numeric, expected):
  """The default `auto`: piecewise-linear embeddings up to AUTO_EMBEDDINGS_MAX_FEATURES numeric
  features, none above (nor without numeric features); a named choice is kept whatever the
  width."""
  from engine.models import tabm
  assert tabm.AUTO_EMBEDDINGS_MAX_FEATURES == 16 and tabm.DEFAULTS["num_embeddings"] == "auto"
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, max(numeric, 1))).astype(np.float32)
  layout = FeatureLayout(num_features=x.shape[1], numeric=tuple(range(numeric)), missing_flags=(),
                         categorical=(), train_rows=x)
  config = Config(model="tabm", ensemble=2, hidden_units=(8,), n_bins=4, strategy="baseline")
  assert config.model.num_embeddings == "auto"
  names = [v.name for v in models.build(config, layout).variables]
  assert any("ple_kernel" in n for n in names) == (expected == "piecewise_linear")
  assert tabm.embeddings_for("periodic", numeric) == "periodic"
  assert tabm.embeddings_for("none", numeric) == "none"

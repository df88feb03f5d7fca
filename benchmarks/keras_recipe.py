"""The TF tutorial's oversampling recipe ("Classification on imbalanced data"), run faithfully.

  python benchmarks/keras_recipe.py --data_path=creditcard.csv.gz --json=keras_recipe.json

The reference the engine's wall time is measured against (benchmarks/wall_time.py). Steps as in
the tutorial: read the CSV; drop Time, Amount -> log(Amount + 0.001); split 80/20 then 80/20
again (64/16/20); StandardScaler fitted on train; clip to [-5, 5]; per-class datasets
from_tensor_slices -> shuffle(100000) -> repeat, mixed element-wise by
`sample_from_datasets(weights=[0.5, 0.5])`, batch 2048, prefetch(2); the tutorial's model
(Dense(16, relu) -> Dropout(0.5) -> Dense(1, sigmoid)) with output bias 0 for balanced data;
fit(epochs=100, steps_per_epoch=20, validation on the cached, batched validation split,
EarlyStopping(val_prc, patience=10, mode=max, restore_best_weights=True)); evaluate on test.
Two deviations, both only to make runs repeatable: the splits take `random_state=--seed` and
Keras is seeded with it. Exact test ROC-AUC and average precision come from sklearn.

Prints one JSON object (and writes it to --json): wall seconds from start to results, with the
phase times, and the test metrics.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

EPOCHS = 100
STEPS_PER_EPOCH = 20
BATCH_SIZE = 2048
BUFFER_SIZE = 100000


def tutorial_metrics(with_scores: bool = True):
  """The tutorial's metrics; `with_scores=False` drops cross entropy and Brier score, leaving the
  nine the engine itself computes (a like-for-like throughput anchor)."""
  scores = [keras.metrics.BinaryCrossentropy(name="cross entropy"),
            keras.metrics.MeanSquaredError(name="Brier score")] if with_scores else []
  return scores + [
      keras.metrics.TruePositives(name="tp"),
      keras.metrics.FalsePositives(name="fp"),
      keras.metrics.TrueNegatives(name="tn"),
      keras.metrics.FalseNegatives(name="fn"),
      keras.metrics.BinaryAccuracy(name="accuracy"),
      keras.metrics.Precision(name="precision"),
      keras.metrics.Recall(name="recall"),
      keras.metrics.AUC(name="auc"),
      keras.metrics.AUC(name="prc", curve="PR"),
  ]


def make_model(num_features: int, output_bias: float = 0.0, metrics=None) -> keras.Model:
  """The tutorial's `make_model`: Dense(16, relu) -> Dropout(0.5) -> Dense(1, sigmoid)."""
  model = keras.Sequential([
      keras.Input(shape=(num_features,)),
      keras.layers.Dense(16, activation="relu"),
      keras.layers.Dropout(0.5),
      keras.layers.Dense(1, activation="sigmoid",
                         bias_initializer=keras.initializers.Constant(output_bias)),
  ])
  model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                loss=keras.losses.BinaryCrossentropy(),
                metrics=tutorial_metrics() if metrics is None else metrics)
  return model


def resampled_dataset(x: np.ndarray, y: np.ndarray, seed: int | None = None) -> tf.data.Dataset:
  """The tutorial's `resampled_ds`: element-wise mixing of two shuffled, repeated classes."""
  def make_ds(features, labels):
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    return ds.shuffle(BUFFER_SIZE, seed=seed).repeat()

  positive = y.reshape(-1) != 0
  pos_ds = make_ds(x[positive], y[positive])
  neg_ds = make_ds(x[~positive], y[~positive])
  resampled = tf.data.Dataset.sample_from_datasets([pos_ds, neg_ds], weights=[0.5, 0.5],
                                                   seed=seed)
  return resampled.batch(BATCH_SIZE).prefetch(2)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", required=True, help="the credit-card CSV(.gz)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--epochs", type=int, default=EPOCHS)
  p.add_argument("--json", default=None)
  p.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity")
  args = p.parse_args()
  keras.utils.set_random_seed(args.seed)
  phases = {"imports": time.perf_counter() - T_START}

  t = time.perf_counter()
  raw_df = pd.read_csv(args.data_path)
  cleaned_df = raw_df.copy()
  cleaned_df.pop("Time")
  eps = 0.001  # 0 => 0.1¢
  cleaned_df["Log Amount"] = np.log(cleaned_df.pop("Amount") + eps)
  train_df, test_df = train_test_split(cleaned_df, test_size=0.2, random_state=args.seed)
  train_df, val_df = train_test_split(train_df, test_size=0.2, random_state=args.seed)
  train_labels = np.array(train_df.pop("Class")).reshape(-1, 1)
  bool_train_labels = train_labels[:, 0] != 0
  val_labels = np.array(val_df.pop("Class")).reshape(-1, 1)
  test_labels = np.array(test_df.pop("Class")).reshape(-1, 1)
  scaler = StandardScaler()
  train_features = np.clip(scaler.fit_transform(np.array(train_df)), -5, 5)
  val_features = np.clip(scaler.transform(np.array(val_df)), -5, 5)
  test_features = np.clip(scaler.transform(np.array(test_df)), -5, 5)
  phases["data"] = time.perf_counter() - t

  t = time.perf_counter()

  resampled_ds = resampled_dataset(train_features, train_labels)
  val_ds = tf.data.Dataset.from_tensor_slices((val_features, val_labels)).cache()
  val_ds = val_ds.batch(BATCH_SIZE).prefetch(2)

  # Balanced batches: the output bias starts at 0, as the tutorial resets it for this model.
  model = make_model(train_features.shape[-1], output_bias=0.0)
  early_stopping = keras.callbacks.EarlyStopping(
      monitor="val_prc", verbose=args.verbose, patience=10, mode="max",
      restore_best_weights=True)
  history = model.fit(resampled_ds, steps_per_epoch=STEPS_PER_EPOCH, epochs=args.epochs,
                      callbacks=[early_stopping], validation_data=val_ds, verbose=args.verbose)
  phases["fit"] = time.perf_counter() - t

  t = time.perf_counter()
  evaluated = model.evaluate(test_features, test_labels, batch_size=BATCH_SIZE, verbose=0,
                             return_dict=True)
  probabilities = model.predict(test_features, batch_size=BATCH_SIZE, verbose=0)[:, 0]
  y = test_labels[:, 0]
  pred = probabilities >= 0.5
  test = {
      "auc": float(skm.roc_auc_score(y, probabilities)),
      "prc": float(skm.average_precision_score(y, probabilities)),
      "tp": int(np.sum(pred & (y == 1))), "fp": int(np.sum(pred & (y == 0))),
      "tn": int(np.sum(~pred & (y == 0))), "fn": int(np.sum(~pred & (y == 1))),
  }
  test["precision"] = test["tp"] / max(1, test["tp"] + test["fp"])
  test["recall"] = test["tp"] / max(1, test["tp"] + test["fn"])
  test["keras_streaming"] = {k: float(v) for k, v in evaluated.items()}
  phases["evaluate"] = time.perf_counter() - t

  epochs_run = len(history.history["loss"])
  out = {
      "recipe": "tutorial oversampling: fit(resampled_ds, epochs=%d, steps_per_epoch=%d), "
                "EarlyStopping(val_prc, patience=10, restore_best_weights)" % (
                    args.epochs, STEPS_PER_EPOCH),
      "wall_seconds": time.perf_counter() - T_START,
      "phases_seconds": phases,
      "epochs_run": epochs_run,
      "best_epoch": int(np.argmax(history.history["val_prc"])) + 1,
      "test": test,
      "seed": args.seed,
  }
  print(json.dumps(out, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()

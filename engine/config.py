"""The one configuration object of a run.

`main.py` is the only place that reads flags; it builds a `Config` and hands it to the
library. Every field is validated here, once, with the bad value in the message.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

STRATEGIES = ("baseline", "class_weight", "oversample")
DISTRIBUTIONS = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
CALIBRATIONS = ("platt", "prior")
DATASETS = ("creditcard", "synthetic")
SPLITS = ("random", "time")
CLEANINGS = ("auto", "on", "off")
# Metrics the early-stopping monitor may name: `val_` + one of these, as the loop computes them
# on the whole validation split (`auc` and `prc` exact, over all predictions; `*_exact` are
# their older names).
MONITORABLE = ("loss", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "auc", "prc",
               "auc_exact", "prc_exact")

# An epoch is an evaluation interval, not a pass over the data: 50 steps for every strategy.
# The oversampled stream draws with replacement, so a pass means nothing for it; and at the
# default batch of 512 a pass over the credit-card training split is ~350 steps, while the
# models are best after 500-2000 steps (BUILD.md, "Model quality"): early stopping needs to look
# every few dozen steps, and scoring the validation split every 50 keeps that cheap.
DEFAULT_STEPS_PER_EPOCH = 50


class ConfigError(ValueError):
  """A configuration value is invalid. The message names the field and the value."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that decides what a run does. Frozen: a run never changes its own config."""

  # Data.
  dataset: str = "creditcard"
  data_path: str | None = None
  label_column: str = "Class"
  drop_invalid_rows: bool = False
  synthetic_rows: int = 284_807
  validation_fraction: float = 0.16
  test_fraction: float = 0.20
  clip: float = 5.0
  # Column roles (input_pipeline/columns.py): integer-coded categories, identifiers kept out of
  # the model (and copied into predict output), and the time column `--split=time` orders by.
  categorical_columns: tuple[str, ...] = ()
  id_columns: tuple[str, ...] = ()
  time_column: str | None = None
  # "random": stratified and seeded; "time": the last rows in time are test, the ones before
  # them validation (train on the past, test on the future).
  split: str = "random"
  # The credit-card cleaning (drop `Time`, log `Amount`; input_pipeline/preprocessing.py):
  # "auto" applies it to the credit-card set itself (a table of exactly its columns), "on" to
  # any table that has those columns, "off" never.
  creditcard_cleaning: str = "auto"
  # A category's vocabulary: its values seen at least `min_category_count` times in training,
  # the `max_categories` most frequent; the rest share one bucket. More distinct values than
  # `max_distinct_values` are refused: counting them would not fit in memory.
  max_categories: int = 100
  min_category_count: int = 10
  max_distinct_values: int = 1_000_000
  # A directory written by `main.py --mode=prepare` (TFRecord shards + metadata): train from it
  # in a streaming way instead of loading a CSV into memory.
  prepared_dir: str | None = None
  # --mode=prepare: CSV rows read at a time (bounds its memory), TFRecord shards per class.
  prepare_chunk_rows: int = 200_000
  prepare_shards: int = 16

  # Imbalance strategy and model.
  strategy: str = "oversample"
  hidden_units: tuple[int, ...] = (64,)
  dropout: float = 0.2
  # Rows per class chunk that `sample_from_datasets` mixes (see input_pipeline/datasets.py).
  oversample_chunk: int = 64
  # The share of the positives: of the rows of a training batch (`oversample`), or of the total
  # loss weight (`class_weight`; 1/2 is the classic total / (2 * count)).
  positive_fraction: float = 0.005
  # Members of the ensemble trained side by side in one step (engine/model.py); 1: one model.
  ensemble: int = 1

  # Optimisation.
  seed: int = 0
  epochs: int = 100
  batch_size: int = 512
  learning_rate: float = 3e-3
  # Decoupled weight decay (AdamW) on the kernels; 0: plain Adam.
  weight_decay: float = 0.0
  # The momentum of a moving average of the weights, updated every step; the average is what is
  # evaluated, kept as the best weights and exported. 0: no average, the weights themselves.
  ema_momentum: float = 0.0
  steps_per_epoch: int | None = None
  steps_per_loop: int = 100
  eval_batch_size: int = 8192
  # XLA for the training step and the scoring: "auto" (what measured faster on the device
  # type, engine/distribute.py), "true" or "false".
  jit_compile: str = "auto"
  deterministic: bool = False

  # Early stopping.
  monitor: str = "val_prc"
  patience: int = 10

  # Distribution.
  distribution: str = "auto"
  logical_cpus: int = 0
  # Threads one op may split its work over (TensorFlow's intra-op pool). 0: auto
  # (engine/distribute.py, intra_op_threads), N: N threads.
  intra_op_threads: int = 0
  tpu: str | None = None

  # Operating point: the decision threshold is chosen on the validation split, either as the
  # highest threshold whose recall reaches `target_recall`, or (when both costs are given) as
  # the one minimising fp_cost * FP + fn_cost * FN.
  target_recall: float = 0.9
  fp_cost: float | None = None
  fn_cost: float | None = None
  # How scores become the real-world probability (engine/calibration.py): "platt" (the prior
  # correction, then Platt scaling fitted on validation) or "prior" (the correction alone).
  calibration: str = "platt"

  # Run management.
  fresh: bool = False
  checkpoints_to_keep: int = 3
  # The latest checkpoint is written at the end of an epoch once this many seconds have passed
  # since the last one (0: every epoch), and always at the end and on SIGTERM.
  checkpoint_interval_seconds: float = 30.0

  def __post_init__(self):
    validate(self)

  def replace(self, **changes: Any) -> "Config":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    for name in ("hidden_units", "categorical_columns", "id_columns"):
      d[name] = list(getattr(self, name))
    return d

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @property
  def monitor_metric(self) -> str:
    """The validation metric the monitor names, without the `val_` prefix.

    `prc` and `auc` are the exact areas; `prc_exact` and `auc_exact`, their older names, mean
    the same metrics.
    """
    name = self.monitor[len("val_"):]
    return {"prc_exact": "prc", "auc_exact": "auc"}.get(name, name)

  @property
  def monitor_higher_is_better(self) -> bool:
    return self.monitor_metric not in ("loss", "fp", "fn")


def _require(ok: bool, field: str, value: Any, why: str) -> None:
  if not ok:
    raise ConfigError(f"invalid --{field}={value!r}: {why}")


def _validate_roles(c: Config) -> None:
  """The split and the column roles: one role per column, never the label."""
  _require(c.split in SPLITS, "split", c.split, f"must be one of {', '.join(SPLITS)}")
  _require(c.creditcard_cleaning in CLEANINGS, "creditcard_cleaning", c.creditcard_cleaning,
           f"must be one of {', '.join(CLEANINGS)}")
  _require(c.split != "time" or bool(c.time_column), "time_column", c.time_column,
           "--split=time needs --time_column=<the column that orders the rows>")
  roles = {"categorical_columns": c.categorical_columns, "id_columns": c.id_columns,
           "time_column": (c.time_column,) if c.time_column else ()}
  for field, names in roles.items():
    _require(c.label_column not in names, field, ",".join(names),
             f"names the label column '{c.label_column}'")
    for other, other_names in roles.items():
      both = sorted(set(names) & set(other_names))
      _require(other == field or not both, field, ",".join(names),
               f"'{both[0] if both else ''}' is also in --{other}: a column has one role")


def _validate_prepared(c: Config) -> None:
  """A prepared directory fixed the data, its column roles and its split at --mode=prepare."""
  _require(c.prepared_dir is None or not c.data_path, "prepared_dir", c.prepared_dir,
           "reads a prepared directory; do not pass --data_path with it")
  fixed = [name for name, value in (("categorical_columns", c.categorical_columns),
                                    ("id_columns", c.id_columns), ("time_column", c.time_column),
                                    ("split", c.split != "random")) if value]
  _require(c.prepared_dir is None or not fixed, "prepared_dir", c.prepared_dir,
           f"its column roles and split were fixed by --mode=prepare; do not pass "
           f"--{fixed[0] if fixed else ''} with it")


def validate(c: Config) -> None:
  """Raises ConfigError naming the first invalid field."""
  _require(c.strategy in STRATEGIES, "strategy", c.strategy, f"must be one of {', '.join(STRATEGIES)}")
  _require(c.distribution in DISTRIBUTIONS, "distribution", c.distribution,
           f"must be one of {', '.join(DISTRIBUTIONS)}")
  _require(c.dataset in DATASETS, "dataset", c.dataset, f"must be one of {', '.join(DATASETS)}")
  _require(bool(c.label_column), "label_column", c.label_column, "must not be empty")
  _validate_roles(c)
  for name in ("epochs", "batch_size", "patience", "steps_per_loop", "eval_batch_size",
               "oversample_chunk", "checkpoints_to_keep", "synthetic_rows", "prepare_chunk_rows",
               "prepare_shards", "max_categories", "min_category_count",
               "max_distinct_values"):
    value = getattr(c, name)
    _require(isinstance(value, int) and value > 0, name, value, "must be a positive integer")
  _require(c.steps_per_epoch is None or c.steps_per_epoch > 0, "steps_per_epoch",
           c.steps_per_epoch, "must be a positive integer")
  _require(math.isfinite(c.learning_rate) and c.learning_rate > 0, "learning_rate",
           c.learning_rate, "must be a finite number > 0")
  _require(0.0 <= c.dropout < 1.0, "dropout", c.dropout, "must be in [0, 1)")
  _require(0.0 < c.positive_fraction < 1.0, "positive_fraction", c.positive_fraction,
           "must be in (0, 1)")
  _require(isinstance(c.ensemble, int) and 1 <= c.ensemble <= 64, "ensemble", c.ensemble,
           "must be an integer from 1 to 64")
  _require(math.isfinite(c.weight_decay) and c.weight_decay >= 0, "weight_decay", c.weight_decay,
           "must be a finite number >= 0")
  _require(0.0 <= c.ema_momentum < 1.0, "ema_momentum", c.ema_momentum, "must be in [0, 1)")
  _require(len(c.hidden_units) > 0 and all(isinstance(u, int) and u > 0 for u in c.hidden_units),
           "hidden_units", ",".join(map(str, c.hidden_units)),
           "must be a comma-separated list of positive integers")
  _require(0.0 < c.validation_fraction < 1.0, "validation_fraction", c.validation_fraction,
           "must be in (0, 1)")
  _require(0.0 < c.test_fraction < 1.0, "test_fraction", c.test_fraction, "must be in (0, 1)")
  _require(c.validation_fraction + c.test_fraction < 0.9, "test_fraction", c.test_fraction,
           "validation_fraction + test_fraction must leave at least 10% for training")
  _require(c.clip > 0, "clip", c.clip, "must be > 0")
  _require(math.isfinite(c.checkpoint_interval_seconds) and c.checkpoint_interval_seconds >= 0,
           "checkpoint_interval_seconds", c.checkpoint_interval_seconds,
           "must be a finite number >= 0")
  _require(c.jit_compile in ("auto", "true", "false"), "jit_compile", c.jit_compile,
           "must be auto, true or false")
  _require(c.logical_cpus >= 0, "logical_cpus", c.logical_cpus, "must be >= 0")
  _require(c.intra_op_threads >= 0, "intra_op_threads", c.intra_op_threads, "must be >= 0")
  _require(c.monitor.startswith("val_") and c.monitor_metric in MONITORABLE, "monitor", c.monitor,
           f"must be val_ + one of {', '.join(MONITORABLE)}")
  _require(c.batch_size % c.oversample_chunk == 0 or c.strategy != "oversample",
           "oversample_chunk", c.oversample_chunk,
           f"must divide --batch_size={c.batch_size}")
  _require(c.distribution != "tpu" or bool(c.tpu), "tpu", c.tpu,
           "--distribution=tpu needs --tpu=<name or grpc://address>")
  _require(c.seed >= 0, "seed", c.seed, "must be >= 0")
  _validate_prepared(c)
  _validate_scores(c)


def _validate_scores(c: Config) -> None:
  """The calibration of the scores and the rule that picks the decision threshold on them."""
  _require(c.calibration in CALIBRATIONS, "calibration", c.calibration,
           f"must be one of {', '.join(CALIBRATIONS)}")
  _require(0.0 < c.target_recall <= 1.0, "target_recall", c.target_recall, "must be in (0, 1]")
  _require((c.fp_cost is None) == (c.fn_cost is None), "fp_cost" if c.fp_cost is None else
           "fn_cost", None, "--fp_cost and --fn_cost go together; pass both or neither")
  for name in ("fp_cost", "fn_cost"):
    value = getattr(c, name)
    _require(value is None or (math.isfinite(value) and value >= 0), name, value,
             "must be a finite number >= 0")
  _require(c.fp_cost is None or c.fp_cost + c.fn_cost > 0, "fn_cost", c.fn_cost,
           "--fp_cost and --fn_cost cannot both be 0")

"""The six sections of a run's config, each a frozen dataclass that validates itself.

Every field is written once, here, with its help text and what the flags, the resume check and
HParams need to know of it (`option`); engine/config/__init__.py derives those lists and builds
the `Config` that holds the sections. This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from engine.config.options import (CALIBRATIONS, CLEANINGS, DATASETS, DEFAULT_STEPS_PER_EPOCH,
                                  DISTRIBUTIONS, MONITORABLE, SPLIT_METHODS, STRATEGIES,
                                  _one_of, _positive_ints, _require, default_model, option,
                                  plugins)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the rows come from, how columns are read, and how they are split."""

  dataset: str = option("creditcard", "Without --data_path: the credit-card fraud set (fetched, "
                        "verified, cached) or a synthetic credit-card-shaped set made from "
                        "--seed.", choices=DATASETS, compat=True)
  data_path: str | None = option(None, "A local CSV, CSV.gz, .parquet file or directory of "
                                 "Parquet files with a 0/1 label column. Other "
                                 "columns are numeric features (empty cells filled with the "
                                 "training median) or, when they hold text, categorical ones; "
                                 "see --id_columns, --time_column, --categorical_columns.",
                                 compat=True)
  label_column: str = option("Class", "Name of the label column.", compat=True)
  drop_invalid_rows: bool = option(False, "Drop rows with Inf, extreme or non-numeric values in "
                                   "numeric columns (and log how many) instead of refusing the "
                                   "file.", compat=True)
  synthetic_rows: int = option(284_807, "Rows of --dataset=synthetic.", compat=True)
  seed: int = option(0, "Seeds the split, the initial weights, dropout and sampling.",
                     compat=True, hparam=True)
  validation_fraction: float = option(0.16, "Share of rows in the validation split.",
                                      compat=True)
  test_fraction: float = option(0.20, "Share of rows in the test split.", compat=True)
  clip: float = option(5.0, "Standardised numeric features are clipped to [-clip, clip].",
                       compat=True)
  categorical_columns: tuple[str, ...] = option((), "Integer-coded columns to treat as "
                                                "categories (text columns are categories "
                                                "already).", compat=True)
  id_columns: tuple[str, ...] = option((), "Columns kept out of the model and copied into "
                                       "--mode=predict output, e.g. a transaction ID.",
                                       compat=True)
  time_column: str | None = option(None, "The column that orders the rows (numbers or "
                                   "date-times); never a feature. Needed by --split=time.",
                                   compat=True)
  time_features: bool = option(True, "Add the hour of the day and the day of the week of "
                               "--time_column (sin and cos of each cycle) as features; the "
                               "export then reads the time column too.", compat=True)
  split: str = option("random", "random: stratified by class, seeded; time: train on the past, "
                      "the last --test_fraction of the rows in time is test and the "
                      "--validation_fraction before it validation.", choices=SPLIT_METHODS,
                      compat=True)
  creditcard_cleaning: str = option("auto", "Take `Time` out of the features (on the set "
                                    "itself with --time_features: as its time column, for the "
                                    "hour of day) and replace `Amount` by log(Amount + "
                                    "0.001). auto: on the credit-card set itself (a table of "
                                    "exactly its columns); on: wherever those columns are "
                                    "features; off: never.", choices=CLEANINGS, compat=True)
  max_categories: int = option(100, "Most frequent values kept per categorical column; the "
                               "others share an out-of-vocabulary bucket.", compat=True)
  category_stats: str = option("auto", "Add each categorical column's training frequency and "
                               "out-of-fold fraud rate as two numeric features "
                               "(input_pipeline/category_stats.py). auto: for the columns "
                               "with more distinct values than --max_categories.",
                               choices=("auto", "on", "off"), compat=True)
  category_deviations: bool = option(True, "With the category statistics: also compare each "
                                     "numeric feature with the category value's usual one "
                                     "(input_pipeline/category_usual.py), e.g. an amount "
                                     "with the merchant's usual ticket.", compat=True)
  min_category_count: int = option(10, "Training rows a category needs to get its own bucket.",
                                   compat=True)
  max_distinct_values: int = option(1_000_000, "Refuse a categorical column with more distinct "
                                    "values than this (its counts would not fit in memory).")
  prepared_dir: str | None = option(None, "Train from a directory written by --mode=prepare, "
                                    "streaming it from disk (for data larger than memory).",
                                    compat=True)
  prepare_chunk_rows: int = option(200_000, "--mode=prepare: rows read at a time.")
  prepare_shards: int = option(16, "--mode=prepare: TFRecord shards per split and class (at "
                               "least the number of workers that will read them).")

  def __post_init__(self):
    _one_of("dataset", self.dataset, DATASETS)
    _one_of("creditcard_cleaning", self.creditcard_cleaning, CLEANINGS)
    _require(bool(self.label_column), "label_column", self.label_column, "must not be empty")
    _positive_ints(self, ("synthetic_rows", "prepare_chunk_rows", "prepare_shards",
                          "max_categories", "min_category_count", "max_distinct_values"))
    _require(self.seed >= 0, "seed", self.seed, "must be >= 0")
    for name in ("validation_fraction", "test_fraction"):
      _require(0.0 < getattr(self, name) < 1.0, name, getattr(self, name), "must be in (0, 1)")
    _require(self.validation_fraction + self.test_fraction < 0.9, "test_fraction",
             self.test_fraction,
             "validation_fraction + test_fraction must leave at least 10% for training")
    _require(self.clip > 0, "clip", self.clip, "must be > 0")
    self._validate_roles()
    self._validate_prepared()

  def _validate_roles(self) -> None:
    """The split and the column roles: one role per column, never the label."""
    _one_of("split", self.split, SPLIT_METHODS)
    _require(self.split != "time" or bool(self.time_column), "time_column", self.time_column,
             "--split=time needs --time_column=<the column that orders the rows>")
    roles = {"categorical_columns": self.categorical_columns, "id_columns": self.id_columns,
             "time_column": (self.time_column,) if self.time_column else ()}
    for field, names in roles.items():
      _require(self.label_column not in names, field, ",".join(names),
               f"names the label column '{self.label_column}'")
      for other, other_names in roles.items():
        both = sorted(set(names) & set(other_names))
        _require(other == field or not both, field, ",".join(names),
                 f"'{both[0] if both else ''}' is also in --{other}: a column has one role")

  def _validate_prepared(self) -> None:
    """A prepared directory fixed the data, its column roles and its split at --mode=prepare."""
    _require(self.prepared_dir is None or not self.data_path, "prepared_dir", self.prepared_dir,
             "reads a prepared directory; do not pass --data_path with it")
    fixed = [name for name, value in (("categorical_columns", self.categorical_columns),
                                      ("id_columns", self.id_columns),
                                      ("time_column", self.time_column),
                                      ("split", self.split != "random")) if value]
    _require(self.prepared_dir is None or not fixed, "prepared_dir", self.prepared_dir,
             f"its column roles and split were fixed by --mode=prepare; do not pass "
             f"--{fixed[0] if fixed else ''} with it")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The model family (engine/models/) and the fields the families read."""

  name: str | None = option(None, "The model family: the module engine/models/NAME.py. "
                            "Default: tabm. The fields a run does not set take the family's "
                            "DEFAULTS (engine/models/tabm.py); mlp's are the fields' own.",
                            flag="model", choices=lambda: plugins("models"), compat=True,
                            hparam=True)
  hidden_units: tuple[int, ...] = option((64,), "Units of each hidden Dense(relu) layer.",
                                         compat=True, hparam=True)
  dropout: float = option(0.2, "Dropout rate after each hidden layer.", hparam=True)
  ensemble: int = option(1, "Members of an ensemble trained side by side in one compiled step "
                         "(own initial weights, dropout and rows); the model's probability is "
                         "the mean of theirs. --model=tabm: its K.",
                         compat=True, hparam=True)
  # What --model=tabm reads (engine/models/tabm.py); the other families ignore them.
  tabm_arch: str = option("tabm", "--model=tabm: tabm (BatchEnsemble layers), tabm-mini (one "
                          "input scaling per member, a shared MLP) or tabm-packed (K "
                          "independent MLPs).", choices=("tabm", "tabm-mini", "tabm-packed"),
                          compat=True, hparam=True)
  num_embeddings: str = option("none", "--model=tabm: embeddings of the numeric features: "
                               "periodic (PLR), piecewise_linear (training quantile bins), or "
                               "auto (tabm's default): piecewise_linear for a table of few "
                               "numeric features (at most AUTO_EMBEDDINGS_MAX_FEATURES, "
                               "engine/models/tabm.py), none for a wider one.",
                               choices=("none", "periodic", "piecewise_linear", "auto"),
                               compat=True, hparam=True)
  d_embedding: int = option(16, "--model=tabm: the size of each numeric feature's embedding.",
                            compat=True)
  n_frequencies: int = option(16, "--model=tabm, periodic embeddings: frequencies per feature.",
                              compat=True)
  frequency_scale: float = option(0.1, "--model=tabm, periodic embeddings: the sd of the "
                                  "frequencies' initialisation.", compat=True)
  embedding_lite: bool = option(True, "--model=tabm, periodic embeddings: one linear layer "
                                "shared by all features.", compat=True)
  n_bins: int = option(16, "--model=tabm, piecewise-linear embeddings: bins per feature, at "
                       "the training split's quantiles.", compat=True)
  input_transform: str = option("none", "--model=tabm: quantile_normal maps each numeric "
                                "feature through its training quantiles to a standard normal.",
                                choices=("none", "quantile_normal"), compat=True)

  def __post_init__(self):
    if self.name is None:
      object.__setattr__(self, "name", default_model())
    _one_of("model", self.name, plugins("models"))
    _positive_ints(self, ("d_embedding", "n_frequencies", "n_bins"))
    _require(self.frequency_scale > 0, "frequency_scale", self.frequency_scale, "must be > 0")
    _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
    _require(isinstance(self.ensemble, int) and 1 <= self.ensemble <= 64, "ensemble",
             self.ensemble, "must be an integer from 1 to 64")
    _require(len(self.hidden_units) > 0 and all(isinstance(u, int) and u > 0
                                                for u in self.hidden_units),
             "hidden_units", ",".join(map(str, self.hidden_units)),
             "must be a comma-separated list of positive integers")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The imbalance strategy, the loss, the stream and the optimisation."""

  strategy: str = option("oversample", "How to handle the class imbalance (engine/strategies.py)."
                         " baseline: the data's own stream, unweighted loss, output bias "
                         "log(pos/neg). class_weight: the data's own stream, per-class loss "
                         "weights giving the positives --positive_fraction q of the total "
                         "weight (q=0.5 is the classic total/(2*count)). oversample: batches of "
                         "single-class chunks drawn by sample_from_datasets, positive with "
                         "probability q. Both start from the bias log(q/(1-q)) and have their "
                         "scores shifted back to the real fraud rate. all: the three from the "
                         "same initial weights in <model_dir>/<strategy>, compared in "
                         "<model_dir>/comparison.md.", choices=STRATEGIES + ("all",),
                         compat=True, hparam=True)
  loss: str = option("bce", "The loss: the module engine/losses/NAME.py (bce: binary "
                     "cross-entropy; focal: the focal loss).", choices=lambda: plugins("losses"),
                     compat=True, hparam=True)
  positive_fraction: float | None = option(
      None, "The positives' share: of the rows of a training batch (oversample), or of the "
      "total loss weight (class_weight; 0.5 is the classic total/(2*count)). Default: 3 times "
      "the training split's fraud rate (at most 0.5); never below that rate. Scores are "
      "corrected back to the real fraud rate.", compat=True)
  oversample_chunk: int = option(64, "Rows per single-class chunk mixed by sample_from_datasets;"
                                 " must divide the per-replica batch.")
  epochs: int = option(100, "Maximum number of epochs.")
  batch_size: int = option(512, "Global batch size (split across replicas).", hparam=True)
  learning_rate: float = option(3e-3, "Adam (AdamW with --weight_decay) learning rate.",
                                hparam=True)
  weight_decay: float = option(0.0, "Decoupled weight decay (AdamW) on the kernels; 0: Adam.")
  ema_momentum: float = option(0.0, "Momentum of a moving average of the weights, updated every "
                               "step; the average is evaluated, kept as the best weights and "
                               "exported. 0: off.", compat=True, hparam=True)
  steps_per_epoch: int | None = option(None, "Steps between evaluations (an epoch is an "
                                       "evaluation interval, not a pass over the data). "
                                       f"Default: {DEFAULT_STEPS_PER_EPOCH}.")
  steps_per_loop: int = option(100, "Training steps per compiled call.")
  jit_compile: str = option("auto", "Compile the training step and the scoring with XLA. auto: "
                            "the choice engine/distribute.py makes for the device type "
                            "(logged; see BUILD.md).", choices=("auto", "true", "false"))
  deterministic: bool = option(False, "Seed everything and enable op determinism, so a run "
                               "(and a resumed run) is reproducible.")

  def __post_init__(self):
    _one_of("strategy", self.strategy, STRATEGIES)
    _one_of("loss", self.loss, plugins("losses"))
    _positive_ints(self, ("epochs", "batch_size", "steps_per_loop", "oversample_chunk"))
    _require(self.steps_per_epoch is None or self.steps_per_epoch > 0, "steps_per_epoch",
             self.steps_per_epoch, "must be a positive integer")
    _require(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
             self.learning_rate, "must be a finite number > 0")
    _require(self.positive_fraction is None or 0.0 < self.positive_fraction < 1.0,
             "positive_fraction", self.positive_fraction, "must be in (0, 1)")
    _require(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             self.weight_decay, "must be a finite number >= 0")
    _require(0.0 <= self.ema_momentum < 1.0, "ema_momentum", self.ema_momentum,
             "must be in [0, 1)")
    _one_of("jit_compile", self.jit_compile, ("auto", "true", "false"))
    _require(self.batch_size % self.oversample_chunk == 0 or self.strategy != "oversample",
             "oversample_chunk", self.oversample_chunk,
             f"must divide --batch_size={self.batch_size}")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
  """Scoring the validation split: early stopping, calibration."""

  monitor: str = option("val_prc", "Validation metric for early stopping and the best "
                        "checkpoint, computed on the whole validation split: val_ + prc or auc "
                        "(exact areas), loss, precision, recall, accuracy, tp, fp, tn, fn; under "
                        "--calibration=platt, loss and the counts at 0.5 are cross-fitted. A "
                        "resumed run keeps it (engine/run_dir.py).")
  patience: int = option(10, "Epochs without improvement before stopping.")
  eval_batch_size: int = option(8192, "Global batch size for evaluation.")
  calibration: str = option("platt", "How scores become the real-world fraud probability "
                            "(engine/calibration.py): the prior correction of the strategy's "
                            "class shift, then Platt scaling fitted on validation (platt), or "
                            "the prior correction alone.", choices=CALIBRATIONS, hparam=True)

  def __post_init__(self):
    _positive_ints(self, ("patience", "eval_batch_size"))
    metric = self.monitor[len("val_"):]
    _require(self.monitor.startswith("val_") and metric in MONITORABLE, "monitor", self.monitor,
             f"must be val_ + one of {', '.join(MONITORABLE)}")
    _one_of("calibration", self.calibration, CALIBRATIONS)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """The operating point the export serves: the decision threshold chosen on validation."""

  target_recall: float = option(0.9, "Choose the decision threshold on the validation split as "
                                "the highest one reaching this recall.", hparam=True)
  fp_cost: float | None = option(None, "With --fn_cost: choose the threshold minimising "
                                 "fp_cost*FP + fn_cost*FN on validation instead of a recall "
                                 "target.")
  fn_cost: float | None = option(None, "Cost of a missed fraud; see --fp_cost.")

  def __post_init__(self):
    _require(0.0 < self.target_recall <= 1.0, "target_recall", self.target_recall,
             "must be in (0, 1]")
    _require((self.fp_cost is None) == (self.fn_cost is None),
             "fp_cost" if self.fp_cost is None else "fn_cost", None,
             "--fp_cost and --fn_cost go together; pass both or neither")
    for name in ("fp_cost", "fn_cost"):
      value = getattr(self, name)
      _require(value is None or (math.isfinite(value) and value >= 0), name, value,
               "must be a finite number >= 0")
    _require(self.fp_cost is None or self.fp_cost + self.fn_cost > 0, "fn_cost", self.fn_cost,
             "--fp_cost and --fn_cost cannot both be 0")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Where and how the run executes: checkpoints, devices, distribution."""

  fresh: bool = option(False, "Start over: remove the run in --model_dir first.")
  checkpoints_to_keep: int = option(3, "Latest checkpoints kept.")
  checkpoint_interval_seconds: float = option(30.0, "Write the latest checkpoint (and the best "
                                              "weights) at the end of an epoch once this many "
                                              "seconds have passed since the last write; 0: "
                                              "every epoch. Also written at the end and on "
                                              "SIGTERM. A run killed without warning resumes "
                                              "from the last write.")
  distribution: str = option("auto", "tf.distribute strategy. auto: mirrored for several GPUs, "
                             "one_device for one, default on CPU.", choices=DISTRIBUTIONS)
  logical_cpus: int = option(0, "Split the CPU into N logical devices (try a multi-replica run "
                             "without GPUs).")
  intra_op_threads: int = option(0, "Threads one TensorFlow op may use. 0: auto (1 on a "
                                 "CPU-only machine with at most 2 cores, per the benchmarks in "
                                 "BUILD.md; else TensorFlow's default, one per core).")
  tpu: str | None = option(None, "TPU name or grpc:// address for --distribution=tpu.")

  def __post_init__(self):
    _one_of("distribution", self.distribution, DISTRIBUTIONS)
    _positive_ints(self, ("checkpoints_to_keep",))
    _require(math.isfinite(self.checkpoint_interval_seconds)
             and self.checkpoint_interval_seconds >= 0, "checkpoint_interval_seconds",
             self.checkpoint_interval_seconds, "must be a finite number >= 0")
    _require(self.logical_cpus >= 0, "logical_cpus", self.logical_cpus, "must be >= 0")
    _require(self.intra_op_threads >= 0, "intra_op_threads", self.intra_op_threads,
             "must be >= 0")
    _require(self.distribution != "tpu" or bool(self.tpu), "tpu", self.tpu,
             "--distribution=tpu needs --tpu=<name or grpc://address>")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "evaluation": EvaluationConfig, "export": ExportConfig, "run": RunConfig}

"""imbalanced-engine: train a binary classifier on highly imbalanced tabular data.

  python main.py --strategy=oversample            # the credit-card fraud set, fetched and verified
  python main.py --dataset=synthetic --epochs=5   # offline
  python main.py --data_path=my.csv --label_column=is_fraud
  python main.py --mode=prepare --data_path=big.csv --output_dir=big/   # data larger than memory
  python main.py --prepared_dir=big/                                    # ... trains from it
  python main.py --strategy=all --target_recall=0.85   # compare the strategies, see comparison.md
  python main.py --mode=predict --export_dir=runs/oversample/export --data_path=new.csv \
      --output=scores.csv

This is the only file that reads flags. It turns them into one `engine.Config` (written to
config.json and TensorBoard; on screen with `-v 1`), and calls `engine.train_and_evaluate`. Bad flags or bad data end with one line on stderr and exit
code 2.
"""

from __future__ import annotations

import gc
import logging as std_logging
import os
import sys

# TensorFlow's C++ start-up chatter (CPU features, missing CUDA) is noise for users; keep warnings
# and errors. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_NUMERICAL = 3
EXIT_WRITE = 4  # A file of the run could not be written: disk full, read-only, quota.

FLAGS = flags.FLAGS

# What to do.
flags.DEFINE_enum("mode", "train", ["train", "prepare", "predict", "evaluate"],
                  "train: train, evaluate and export a model. prepare: read --data_path in "
                  "chunks and write scaled, split TFRecord shards to --output_dir, for "
                  "--prepared_dir. predict: score --data_path with the model in --export_dir "
                  "into --output. evaluate: metrics of --export_dir on the labelled --data_path.")

# What to train.
flags.DEFINE_enum("strategy", "oversample", ["baseline", "class_weight", "oversample", "all"],
                  "How to handle the class imbalance: plain training (`baseline`), per-class "
                  "loss weights total/(2*count) (`class_weight`), balanced batches drawn with "
                  "sample_from_datasets (`oversample`), or `all` three from the same initial "
                  "weights in <model_dir>/<strategy>, compared in <model_dir>/comparison.md.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs and results. Default: "
                    "runs/<strategy>. Running again on it resumes.")
flags.DEFINE_string("export_dir", None, "--mode=predict/evaluate: the exported model, "
                    "<model_dir>/export of a training run.")
flags.DEFINE_string("output", None, "--mode=predict: CSV to write the scores to. "
                    "--mode=evaluate: optional JSON for the metrics.")
flags.DEFINE_float("target_recall", 0.9, "Choose the decision threshold on the validation "
                   "split as the highest one reaching this recall.")
flags.DEFINE_float("fp_cost", None, "With --fn_cost: choose the threshold minimising "
                   "fp_cost*FP + fn_cost*FN on validation instead of a recall target.")
flags.DEFINE_float("fn_cost", None, "Cost of a missed fraud; see --fp_cost.")
flags.DEFINE_enum("calibration", "platt", ["platt", "prior"], "How scores become the real-world "
                  "fraud probability: the prior correction of the strategy's class shift, then "
                  "Platt scaling fitted on validation (platt), or the prior correction alone.")
flags.DEFINE_boolean("fresh", False, "Start over: remove the run in --model_dir first.")

# Data.
flags.DEFINE_enum("dataset", "creditcard", ["creditcard", "synthetic"],
                  "Without --data_path: the credit-card fraud set (fetched, verified, cached) or "
                  "a synthetic credit-card-shaped set made from --seed.")
flags.DEFINE_string("data_path", None, "A local CSV or CSV.gz with a 0/1 label column. Other "
                    "columns are numeric features (empty cells filled with the training median) "
                    "or, when they hold text, categorical ones; see --id_columns, "
                    "--time_column, --categorical_columns.")
flags.DEFINE_string("label_column", "Class", "Name of the label column.")
flags.DEFINE_boolean("drop_invalid_rows", False, "Drop rows with Inf, extreme or non-numeric "
                     "values in numeric columns (and log how many) instead of refusing the file.")
flags.DEFINE_list("categorical_columns", [], "Integer-coded columns to treat as categories "
                  "(text columns are categories already).")
flags.DEFINE_list("id_columns", [], "Columns kept out of the model and copied into "
                  "--mode=predict output, e.g. a transaction ID.")
flags.DEFINE_string("time_column", None, "The column that orders the rows (numbers or "
                    "date-times); never a feature. Needed by --split=time.")
flags.DEFINE_enum("split", "random", ["random", "time"], "random: stratified by class, seeded; "
                  "time: train on the past, the last --test_fraction of the rows in time is "
                  "test and the --validation_fraction before it validation.")
flags.DEFINE_enum("creditcard_cleaning", "auto", ["auto", "on", "off"], "Drop `Time` and "
                  "replace `Amount` by log(Amount + 0.001). auto: on the credit-card set itself "
                  "(a table of exactly its columns); on: wherever those columns are features.")
flags.DEFINE_integer("max_categories", 100, "Most frequent values kept per categorical column; "
                     "the others share an out-of-vocabulary bucket.")
flags.DEFINE_integer("min_category_count", 10, "Training rows a category needs to get its own "
                     "bucket.")
flags.DEFINE_integer("max_distinct_values", 1_000_000, "Refuse a categorical column with more "
                     "distinct values than this (its counts would not fit in memory).")
flags.DEFINE_integer("synthetic_rows", 284_807, "Rows of --dataset=synthetic.")
flags.DEFINE_float("validation_fraction", 0.16, "Share of rows in the validation split.")
flags.DEFINE_float("test_fraction", 0.20, "Share of rows in the test split.")
flags.DEFINE_string("prepared_dir", None, "Train from a directory written by --mode=prepare, "
                    "streaming it from disk (for data larger than memory).")
flags.DEFINE_string("output_dir", None, "--mode=prepare: the directory to write.")
flags.DEFINE_integer("prepare_chunk_rows", 200_000, "--mode=prepare: CSV rows read at a time.")
flags.DEFINE_integer("prepare_shards", 16, "--mode=prepare: TFRecord shards per split and class "
                     "(at least the number of workers that will read them).")

# Model and optimisation.
flags.DEFINE_list("hidden_units", ["64"], "Units of each hidden Dense(relu) layer.")
flags.DEFINE_float("dropout", 0.2, "Dropout rate after each hidden layer.")
flags.DEFINE_integer("seed", 0, "Seeds the split, the initial weights, dropout and sampling.")
flags.DEFINE_integer("epochs", 100, "Maximum number of epochs.")
flags.DEFINE_integer("batch_size", 512, "Global batch size (split across replicas).")
flags.DEFINE_float("learning_rate", 3e-3, "Adam (AdamW with --weight_decay) learning rate.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps between evaluations (an epoch is an "
                     "evaluation interval, not a pass over the data). Default: 50.")
flags.DEFINE_integer("steps_per_loop", 100, "Training steps per compiled call.")
flags.DEFINE_float("positive_fraction", 0.005, "The positives' share: of the rows of a training "
                   "batch (oversample), or of the total loss weight (class_weight; 0.5 is the "
                   "classic total/(2*count)). Scores are corrected back to the real fraud rate.")
flags.DEFINE_integer("ensemble", 1, "Members of an ensemble trained side by side in one "
                     "compiled step (own initial weights, dropout and rows); the model's "
                     "probability is the mean of theirs.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (AdamW) on the kernels; 0: Adam.")
flags.DEFINE_float("ema_momentum", 0.0,
                   "Momentum of a moving average of the weights, updated every step; the average "
                   "is evaluated, kept as the best weights and exported. 0: off.")
flags.DEFINE_integer("oversample_chunk", 64, "Rows per single-class chunk mixed by "
                     "sample_from_datasets; must divide the per-replica batch.")
flags.DEFINE_integer("eval_batch_size", 8192, "Global batch size for evaluation.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "Compile the training step and the scoring with XLA. auto: whichever measured "
                  "faster on this device type (logged; see BUILD.md).")
flags.DEFINE_boolean("deterministic", False, "Seed everything and enable op determinism, so a "
                     "run (and a resumed run) is reproducible.")

# Early stopping and checkpoints.
flags.DEFINE_string("monitor", "val_prc", "Validation metric for early stopping and the "
                    "best checkpoint, computed on the whole validation split: val_ + prc or auc "
                    "(exact areas), loss, precision, recall, accuracy, tp, fp, tn, fn.")
flags.DEFINE_integer("patience", 10, "Epochs without improvement before stopping.")
flags.DEFINE_integer("checkpoints_to_keep", 3, "Latest checkpoints kept.")
flags.DEFINE_float("checkpoint_interval_seconds", 30.0, "Write the latest checkpoint (and the "
                   "best weights) at the end of an epoch once this many seconds have passed "
                   "since the last write; 0: every epoch. Also written at the end and on "
                   "SIGTERM. A run killed without warning resumes from the last write.")

# Distribution.
flags.DEFINE_enum("distribution", "auto",
                  ["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy. auto: mirrored for several GPUs, one_device for one, "
                  "default on CPU.")
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into N logical devices (try a "
                     "multi-replica run without GPUs).")
flags.DEFINE_integer("intra_op_threads", 0, "Threads one TensorFlow op may use. 0: auto (1 on "
                     "a CPU-only machine with at most 2 cores, as measured; else TensorFlow's "
                     "default, one per core).")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --distribution=tpu.")


class ConsoleFormatter(std_logging.Formatter):
  """`12:34:56 message`, and `warning: ` before warnings and errors.

  absl's prefix (level, date, microseconds, thread id, file:line) is ~45 characters of every
  line; the console is read in a 100-column terminal, and the file:line is for developers.
  """

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record):
    line = super().format(record)
    if record.levelno >= std_logging.WARNING:
      stamp, _, message = line.partition(" ")
      line = f"{stamp} {record.levelname.lower()}: {message}"
    return line


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
  """One line on stderr, then exit: for the user's mistakes, never a traceback."""
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  sys.exit(code)


HELP_FLAGS = ("--help", "-help", "-?", "--helpfull", "-helpfull", "--helpshort", "-helpshort",
              "--helpxml", "-helpxml")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with its errors turned into one line and exit code 2.

  absl's help flags print the usage and exit with status 1; help that was asked for and given
  is a success, so those exit 0.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])
  except SystemExit as e:
    if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise


def config_from_flags():
  from engine.config import Config
  try:
    hidden = tuple(int(u) for u in FLAGS.hidden_units)
  except ValueError:
    fail(f"invalid --hidden_units={','.join(FLAGS.hidden_units)}: must be a comma-separated "
         "list of positive integers")
  return Config(
      dataset=FLAGS.dataset, data_path=FLAGS.data_path, label_column=FLAGS.label_column,
      drop_invalid_rows=FLAGS.drop_invalid_rows, synthetic_rows=FLAGS.synthetic_rows,
      validation_fraction=FLAGS.validation_fraction, test_fraction=FLAGS.test_fraction,
      categorical_columns=tuple(FLAGS.categorical_columns), id_columns=tuple(FLAGS.id_columns),
      time_column=FLAGS.time_column, split=FLAGS.split,
      creditcard_cleaning=FLAGS.creditcard_cleaning, max_categories=FLAGS.max_categories,
      min_category_count=FLAGS.min_category_count,
      max_distinct_values=FLAGS.max_distinct_values,
      # `all` is expanded by engine.compare; its configs are validated as oversample's, the
      # strictest (the chunk must divide the batch).
      strategy="oversample" if FLAGS.strategy == "all" else FLAGS.strategy,
      hidden_units=hidden, dropout=FLAGS.dropout,
      oversample_chunk=FLAGS.oversample_chunk, positive_fraction=FLAGS.positive_fraction,
      ensemble=FLAGS.ensemble, weight_decay=FLAGS.weight_decay,
      ema_momentum=FLAGS.ema_momentum, seed=FLAGS.seed,
      epochs=FLAGS.epochs,
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      steps_per_epoch=FLAGS.steps_per_epoch, steps_per_loop=FLAGS.steps_per_loop,
      eval_batch_size=FLAGS.eval_batch_size, jit_compile=FLAGS.jit_compile,
      deterministic=FLAGS.deterministic, monitor=FLAGS.monitor, patience=FLAGS.patience,
      distribution=FLAGS.distribution, logical_cpus=FLAGS.logical_cpus,
      intra_op_threads=FLAGS.intra_op_threads, tpu=FLAGS.tpu,
      fresh=FLAGS.fresh, checkpoints_to_keep=FLAGS.checkpoints_to_keep,
      checkpoint_interval_seconds=FLAGS.checkpoint_interval_seconds,
      prepared_dir=FLAGS.prepared_dir, prepare_chunk_rows=FLAGS.prepare_chunk_rows,
      prepare_shards=FLAGS.prepare_shards,
      target_recall=FLAGS.target_recall, fp_cost=FLAGS.fp_cost, fn_cost=FLAGS.fn_cost,
      calibration=FLAGS.calibration)


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow and lists devices with the C++ start-up lines held back.

  Those lines (oneDNN notices, "could not find cuda drivers", a failed cuInit on machines without
  a GPU) bypass TF_CPP_MIN_LOG_LEVEL and would bury the one line a failed run prints. They are
  replayed if the import itself fails.
  """
  import tempfile
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      import tensorflow as tf
      tf.config.list_physical_devices()
    except BaseException:
      os.dup2(saved, 2)
      held.seek(0)
      sys.stderr.write(held.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected argument(s): {' '.join(argv[1:])} (flags take the form --name=value)")
  # Logs go to stdout; stderr carries only errors, so a failed run's stderr is its reason.
  logging.get_absl_handler().python_handler.stream = sys.stdout
  logging.get_absl_handler().setFormatter(ConsoleFormatter())
  # Importing TensorFlow (and pandas) creates ~400k Python objects, and the garbage collector
  # ran ~5 full collections over the growing heap meanwhile: ~0.7 s of a ~3.4 s import on a
  # 2-core machine. None of those objects is garbage. So no collection until the imports are
  # done; then they are frozen out of every later collection (gc.freeze in run_mode), which
  # scans only the run's own objects from there on.
  gc.disable()
  # The config is built before TensorFlow is imported (engine.config does not import it), so
  # a bad flag fails at once, and the data can start loading in a second process while the
  # import runs (input_pipeline/loading.py).
  from engine.config import ConfigError
  try:
    config = config_from_flags()
  except ConfigError as e:
    fail(str(e))
  if config.data_path:
    # Every mode reads this file: a missing, empty or unreadable one, or one with duplicate
    # headers, is reported now, in a fraction of a second, not after TensorFlow's import and
    # the config dump.
    from input_pipeline import readers
    from input_pipeline.errors import DataError
    try:
      readers.open_table(config.data_path)
    except DataError as e:
      fail(str(e))
  background = None
  if FLAGS.mode == "train":
    from input_pipeline import loading
    background = loading.start(config)
  try:
    run_mode(config, background)
  finally:
    if background:
      background.close()


def run_mode(config, background) -> None:
  try:
    import_tensorflow_quietly()
  finally:
    gc.freeze()
    gc.enable()
  # TensorFlow's checkpoint writer logs an INFO line per save through absl's root logger.
  # So does the SavedModel writer, per export (signature renames, assets, fingerprint).
  quiet = ("functional_saver", "signature_serialization", "builder_impl", "fingerprinting_utils")
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno > logging.converter.STANDARD_INFO or r.module not in quiet)
  # `--strategy=all` builds one Trainer, with its own compiled functions, per strategy: the
  # traces TensorFlow counts as "retracing" are those, expected, and each warning is ~700
  # characters of console.
  logging.get_absl_handler().addFilter(
      lambda r: "triggered tf.function retracing" not in r.getMessage())
  from engine.config import ConfigError
  from input_pipeline.errors import DataError
  model_dir = FLAGS.model_dir or os.path.join("runs", FLAGS.strategy)
  if FLAGS.mode in ("predict", "evaluate"):
    use_export(config)
    return
  # The whole config is in config.json and TensorBoard's Text tab; on screen only with -v 1.
  logging.debug("Config:\n%s", config_json(config))
  if FLAGS.mode == "prepare":
    prepare(config)
    return

  import engine
  load_data_fn = background.result if background else None
  try:
    if FLAGS.strategy == "all":
      from engine import compare
      results = compare.train_all(config, model_dir, load_data_fn=load_data_fn)
    else:
      results = engine.train_and_evaluate(config, model_dir, load_data_fn=load_data_fn)
  except (ConfigError, DataError) as e:
    fail(str(e))
  except engine.NumericalError as e:
    fail(str(e), EXIT_NUMERICAL)
  except engine.WriteError as e:
    fail(str(e), EXIT_WRITE)
  if results.get("preempted"):
    logging.info("Checkpoint saved at step %d; the same command resumes.", results["step"])
    return
  compared = FLAGS.strategy == "all"
  written = os.path.join(model_dir, "comparison.json" if compared else "results.json")
  if os.path.exists(written):  # Not on multi-worker non-chiefs.
    from engine import progress
    from engine.config import STRATEGIES
    runs = [os.path.join(model_dir, s) for s in STRATEGIES] if compared else [model_dir]
    print("\n".join(["", *progress.closing_block(model_dir, runs, comparison=compared)]))


def config_json(config) -> str:
  """The config as JSON; with --strategy=all, `"strategy": "all"`, not the stand-in value."""
  import json
  fields = json.loads(config.to_json())
  fields["strategy"] = FLAGS.strategy
  return json.dumps(fields, indent=2)


def prepare(config) -> None:
  if not FLAGS.output_dir:
    fail("--mode=prepare needs --output_dir=DIR")
  from input_pipeline import prepare as preparation
  from input_pipeline.errors import DataError
  try:
    metadata = preparation.prepare(config, FLAGS.output_dir)
  except DataError as e:
    fail(str(e))
  for name, c in metadata["counts"].items():
    logging.info("  %-10s %8d rows, %5d positives", name, c["rows"], c["positives"])
  logging.info("Wrote %s; train with --prepared_dir=%s", FLAGS.output_dir, FLAGS.output_dir)


def use_export(config) -> None:
  """--mode=predict or --mode=evaluate with the model in --export_dir."""
  from engine import predict
  from engine.config import ConfigError
  from input_pipeline.errors import DataError
  if not FLAGS.export_dir:
    fail(f"--mode={FLAGS.mode} needs --export_dir (a training run's <model_dir>/export)")
  try:
    if FLAGS.output:  # Before the export is loaded and the rows scored.
      predict.check_output(FLAGS.output)
    if FLAGS.mode == "predict":
      predict.predict(config, FLAGS.export_dir, FLAGS.output)
    else:
      metrics = predict.evaluate(config, FLAGS.export_dir)
  except (ConfigError, DataError) as e:
    fail(str(e))
  if FLAGS.mode == "evaluate" and FLAGS.output:
    import json
    try:
      with open(FLAGS.output, "w") as f:
        json.dump(metrics, f, indent=2)
    except OSError as e:
      fail(f"invalid --output={FLAGS.output}: {e.strerror or e}")


def run() -> None:
  """`app.run(main)`, then an immediate exit with its status.

  Once main has returned, every file is written and closed (checkpoints, summaries, results,
  export). What is left is the interpreter's teardown of TensorFlow (its thread pools and
  modules): ~1.2 s of a ~10 s run on a 2-core machine, for nothing. So the logs and streams are
  flushed and the process ends with `os._exit`. An uncaught exception still ends the normal way,
  with its traceback.
  """
  try:
    app.run(main, flags_parser=parse_flags)
    code = 0
  except SystemExit as e:
    code = e.code
  if code is None:
    code = 0
  elif not isinstance(code, int):  # sys.exit("message"): Python prints it and exits 1.
    sys.stderr.write(f"{code}\n")
    code = 1
  import logging as std_logging
  std_logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


if __name__ == "__main__":
  run()

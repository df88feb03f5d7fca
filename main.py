"""imbalanced-engine: train a binary classifier on highly imbalanced tabular data.

  python main.py --strategy=oversample            # the credit-card fraud set, fetched and verified
  python main.py --dataset=synthetic --epochs=5   # offline
  python main.py --data_path=my.csv --label_column=is_fraud
  python main.py --mode=prepare --data_path=big.csv --output_dir=big/   # data larger than memory
  python main.py --prepared_dir=big/                                    # ... trains from it
  python main.py --strategy=all --target_recall=0.85   # compare the strategies, see comparison.md
  python main.py --mode=predict --export_dir=runs/oversample/export --data_path=new.csv \
      --output=scores.csv

This is the only file that reads flags, and it is kept short: the flags of the config are
derived from its fields (engine/config.py), the process set-up is engine/console.py's. It builds
one `engine.Config` (written to config.json and TensorBoard; on screen with `-v 1`) and calls one
entry point per mode. Bad flags or bad data end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys

# TensorFlow's C++ start-up chatter (CPU features, missing CUDA) is noise for users; keep warnings
# and errors. A user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from engine.config import STRATEGIES, Config, fields  # noqa: E402 - no TensorFlow: fails fast
from engine import console  # noqa: E402

FLAGS = flags.FLAGS

# What to do, and where: the flags that are not part of a run's config.
flags.DEFINE_enum("mode", "train", ["train", "prepare", "predict", "evaluate"],
                  "train: train, evaluate and export a model. prepare: read --data_path in "
                  "chunks and write scaled, split TFRecord shards to --output_dir, for "
                  "--prepared_dir. predict: score --data_path with the model in --export_dir "
                  "into --output. evaluate: metrics of --export_dir on the labelled --data_path.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs and results. Default: "
                    "runs/<strategy>. Running again on it resumes.")
flags.DEFINE_string("export_dir", None, "--mode=predict/evaluate: the exported model, "
                    "<model_dir>/export of a training run.")
flags.DEFINE_string("output", None, "--mode=predict: where to write the scores (Parquet if it "
                    "ends in .parquet, else CSV). --mode=evaluate: optional JSON for the metrics.")
flags.DEFINE_string("output_dir", None, "--mode=prepare: the directory to write.")


def define_config_flags() -> None:
  """One flag per config field, of the field's type, default, help and choices."""
  for f in fields():
    kind, default = str(f.type), f.default
    if f.choices:
      flags.DEFINE_enum(f.name, default, list(f.choices), f.help)
    elif kind.startswith("tuple"):
      flags.DEFINE_list(f.name, [str(v) for v in default], f.help)
    elif kind == "bool":
      flags.DEFINE_boolean(f.name, default, f.help)
    elif kind.startswith("int"):
      flags.DEFINE_integer(f.name, default, f.help)
    elif kind.startswith("float"):
      flags.DEFINE_float(f.name, default, f.help)
    else:
      flags.DEFINE_string(f.name, default, f.help)


define_config_flags()

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
    console.fail(str(e).splitlines()[0])
  except SystemExit as e:
    if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise


def config_from_flags() -> Config:
  """The config of the flags. `--strategy=all` is expanded by engine.compare; its configs are
  validated as oversample's, the strictest (the chunk must divide the batch)."""
  values = {}
  for f in fields():
    if not FLAGS[f.name].present:  # Left to the model family's DEFAULTS or the field's own.
      continue
    value = FLAGS[f.name].value
    if str(f.type).startswith("tuple[int"):
      try:
        value = tuple(int(v) for v in value)
      except ValueError:
        console.fail(f"invalid --{f.name}={','.join(value)}: must be a comma-separated list of "
                     "positive integers")
    values[f.name] = value
  if values.get("strategy") == "all":
    values["strategy"] = "oversample"
  return Config(**values)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    console.fail(f"unexpected argument(s): {' '.join(argv[1:])} (flags take the form "
                 "--name=value)")
  console.log_to_console()
  console.hold_garbage_collection()
  with console.errors_as_exit_codes():
    config = config_from_flags()
    if config.data_path:
      # Every mode reads this file: a missing, empty or unreadable one, or one with duplicate
      # headers, is reported now, in a fraction of a second, not after TensorFlow's import and
      # the config dump.
      from input_pipeline import readers
      readers.open_table(config.data_path)
    background = None
    if FLAGS.mode == "train":
      # The data starts loading in a second process while TensorFlow imports here.
      from input_pipeline import loading
      background = loading.start(config)
    try:
      console.import_tensorflow_quietly()
      console.quiet_library_logs()
      run_mode(config, background)
    finally:
      if background:
        background.close()


def run_mode(config, background) -> None:
  if FLAGS.mode in ("predict", "evaluate"):
    use_export(config)
    return
  # The whole config is in config.json and TensorBoard's Text tab; on screen only with -v 1.
  logging.debug("Config:\n%s", config_json(config))
  if FLAGS.mode == "prepare":
    write_prepared(config)
    return
  train(config, background)


def train(config, background) -> None:
  import engine
  from engine import compare, progress
  model_dir = FLAGS.model_dir or os.path.join("runs", FLAGS.strategy)
  load_data_fn = background.result if background else None
  compared = FLAGS.strategy == "all"
  if compared:
    results = compare.train_all(config, model_dir, load_data_fn=load_data_fn)
  else:
    results = engine.train_and_evaluate(config, model_dir, load_data_fn=load_data_fn)
  if results.get("preempted"):
    logging.info("Checkpoint saved at step %d; the same command resumes.", results["step"])
    return
  written = os.path.join(model_dir, "comparison.json" if compared else "results.json")
  if os.path.exists(written):  # Not on multi-worker non-chiefs.
    runs = ([os.path.join(model_dir, s) for s in STRATEGIES] if compared
            else [model_dir])
    print("\n".join(["", *progress.closing_block(model_dir, runs, comparison=compared)]))


def config_json(config) -> str:
  """The config as JSON; with --strategy=all, `"strategy": "all"`, not the stand-in value."""
  import json
  fields = json.loads(config.to_json())
  fields["strategy"] = FLAGS.strategy
  return json.dumps(fields, indent=2)


def write_prepared(config) -> None:
  if not FLAGS.output_dir:
    console.fail("--mode=prepare needs --output_dir=DIR")
  from input_pipeline import prepare
  metadata = prepare.prepare(config, FLAGS.output_dir)
  for name, c in metadata["counts"].items():
    logging.info("  %-10s %8d rows, %5d positives", name, c["rows"], c["positives"])
  logging.info("Wrote %s; train with --prepared_dir=%s", FLAGS.output_dir, FLAGS.output_dir)


def use_export(config) -> None:
  """--mode=predict or --mode=evaluate with the model in --export_dir."""
  from engine import predict
  if not FLAGS.export_dir:
    console.fail(f"--mode={FLAGS.mode} needs --export_dir (a training run's <model_dir>/export)")
  if FLAGS.output:  # Before the export is loaded and the rows scored.
    predict.check_output(FLAGS.output)
  if FLAGS.mode == "predict":
    predict.predict(config, FLAGS.export_dir, FLAGS.output)
    return
  metrics = predict.evaluate(config, FLAGS.export_dir)
  if FLAGS.output:
    import json
    try:
      with open(FLAGS.output, "w") as f:
        json.dump(metrics, f, indent=2)
    except OSError as e:
      console.fail(f"invalid --output={FLAGS.output}: {e.strerror or e}")


if __name__ == "__main__":
  console.run(main, flags_parser=parse_flags)

"""Training throughput of the engine against Keras `model.fit`, measured in one process and one run.

  python benchmarks/throughput.py --data_path=creditcard.csv.gz --json=throughput.json
  python benchmarks/throughput.py --synthetic_rows=284807          # no data file needed

Figures, each the median examples/s over `--rounds` timed epochs after `--warmup` ones:
  anchor_keras_fit   the TF tutorial's recipe: `model.fit` on element-wise
                     `sample_from_datasets([pos, neg], [0.5, 0.5])` (shuffle(100000), repeat,
                     batch 2048, prefetch(2)), Dense(16, relu) -> Dropout(0.5) -> Dense(1,
                     sigmoid), Adam 1e-3, the tutorial's nine metrics.
  engine_oversample  the engine's `oversample` training as main.py runs it: the same state,
                     iterator, compiled loop and epoch function that engine/loop.py uses,
                     all metrics on, compiled with XLA (the default); engine_plain the same
                     without XLA.
  input_pipeline     the engine's training stream alone, pulled inside a tf.function.
  compute_bound      the engine's compiled training loop on one batch already in memory: what
                     this machine can do without any input pipeline (compute_bound_plain:
                     without XLA).
  engine_ensemble8   --ensemble=8 of the same model, in member-examples/s; with its stream
                     alone (input_pipeline_ensemble8) and its compute bound
                     (compute_bound_ensemble8), so the run says which of the two bounds it;
                     engine_ensemble8_plain without XLA.

The contenders run interleaved, one timed epoch of each per round (the Keras epochs drive the
rounds through a callback), so a machine shared with other work slows all of them alike and
their ratios stay comparable.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from engine import distribute, loop, strategies  # noqa: E402
from engine import state as train_state  # noqa: E402
from engine.config import Config  # noqa: E402
from engine.trainer import Trainer, train_iterator  # noqa: E402
from input_pipeline import preprocessing, sources  # noqa: E402
from input_pipeline.data import InMemoryData  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras_recipe  # noqa: E402  (the tutorial's recipe: one definition for every benchmark)

BATCH = 2048


class PeakRss:
  """Polls this process's resident set size in a background thread; `peak` in bytes."""

  def __init__(self, interval: float = 0.05):
    import threading
    self.peak = psutil.Process().memory_info().rss
    self._stop = threading.Event()
    self._interval = interval
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    proc = psutil.Process()
    while not self._stop.wait(self._interval):
      self.peak = max(self.peak, proc.memory_info().rss)

  def stop(self) -> int:
    self._stop.set()
    self._thread.join()
    # getrusage's high-water mark catches what the poll may have missed between samples.
    return max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def load_splits(config: Config) -> preprocessing.Splits:
  frame, _ = sources.load_frame(config)
  return preprocessing.split_and_encode(frame, config)


# --- (1) the anchor: the tutorial's Keras recipe -------------------------------------------

def tutorial_model(num_features: int, output_bias: float = 0.0):
  """The tutorial's model with the nine metrics the engine computes too."""
  return keras_recipe.make_model(num_features, output_bias,
                                 metrics=keras_recipe.tutorial_metrics(with_scores=False))


# --- (2)-(4) the engine ---------------------------------------------------------------------

class _SameBatch:
  """An 'iterator' that yields one in-memory batch forever: the step without any input cost."""

  def __init__(self, batch):
    self.batch = batch

  def __next__(self):
    return self.batch


class EngineContenders:
  """The engine's training, its input stream alone, and its compute bound, built as loop.py does.

  Each is built on its first call (outside the timing), so a contender that times only some of
  them holds no unused models or background streams.
  """

  def __init__(self, config: Config, splits: preprocessing.Splits, *, timed_steps: int):
    self.config = config
    self.timed_steps = timed_steps
    self.strategy = tf.distribute.get_strategy()
    self.data = InMemoryData(splits)
    self.epoch_steps = loop.steps_per_epoch(config)
    self.member_rows = timed_steps * config.batch_size * config.ensemble
    self.positives_pulled = 0
    self.examples_pulled = 0

  def _trainer(self) -> Trainer:
    bias = strategies.get(self.config.strategy).initial_bias(self.data.class_counts(),
                                                             self.config.positive_fraction)
    state = train_state.create(self.config, layout=self.data.layout(self.config.seed),
                               output_bias=bias, strategy=self.strategy)
    return Trainer(self.config, self.data, state, self.strategy)

  def _iterator(self):
    return train_iterator(self.data, self.strategy, config=self.config,
                          members=self.config.ensemble)

  @functools.cached_property
  def trainer(self) -> Trainer:
    """(2) Training as main.py runs it."""
    return self._trainer()

  @functools.cached_property
  def pull(self):
    """(3) The same stream, consumed by a compiled loop that only touches each batch."""
    iterator = self._iterator()

    @tf.function
    def pull(num_steps):
      total = tf.constant(0, tf.int64)
      for _ in tf.range(num_steps):
        _, y = next(iterator)
        total += tf.reduce_sum(tf.cast(y, tf.int64))
      return total
    return pull

  @functools.cached_property
  def compute(self) -> Trainer:
    """(4) The compiled loop on one real batch of the stream, already in memory."""
    trainer = self._trainer()
    trainer._iterator = _SameBatch(next(self._iterator()))
    return trainer

  def train(self) -> float:
    """Member-examples per second: rows times members (an ensemble trains K models at once)."""
    trainer = self.trainer
    # Epochs of main.py's length, so the rate includes its per-epoch metric read-out.
    remaining, seconds = self.timed_steps, 0.0
    while remaining > 0:
      steps = min(remaining, self.epoch_steps)
      _, dt = trainer.train(steps)
      seconds += dt
      remaining -= steps
    return self.member_rows / seconds

  def pipeline(self) -> float:
    """Rows per second of the stream alone (an ensemble's element holds K members' batches)."""
    pull = self.pull
    t0 = time.perf_counter()
    positives = int(pull(tf.constant(self.timed_steps)).numpy())
    dt = time.perf_counter() - t0
    self.positives_pulled += positives
    self.examples_pulled += self.member_rows
    return self.member_rows / dt

  def compute_bound(self) -> float:
    _, dt = self.compute.train(self.timed_steps)
    return self.member_rows / dt


class _Rounds:
  """Keras callback: times each fit epoch and runs one round of the engine contenders after it."""

  def __init__(self, contenders: dict, rates: dict[str, list[float]], warmup: int):
    import keras

    outer = self

    class Callback(keras.callbacks.Callback):
      def on_epoch_begin(self, epoch, logs=None):
        outer.t0 = time.perf_counter()

      def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - outer.t0
        outer.record(epoch, "anchor_keras_fit", outer.anchor_examples / dt)
        # Rotated each round: whoever runs right after a Keras epoch shares the CPU with its
        # still-busy input threads, so no contender should always be first.
        names = list(contenders)
        shift = epoch % len(names)
        for name in names[shift:] + names[:shift]:
          outer.record(epoch, name, contenders[name]())
        timed = epoch >= warmup
        print(f"  round {epoch + 1}{'' if timed else ' (warm-up)'}: " + "  ".join(
            f"{k} {v[-1]:,.0f}" for k, v in outer.last.items()), flush=True)

    self.callback = Callback()
    self.rates, self.warmup, self.t0 = rates, warmup, 0.0
    self.last = {"anchor_keras_fit": [0.0], **{name: [0.0] for name in contenders}}
    self.anchor_examples = 0

  def record(self, epoch: int, name: str, rate: float) -> None:
    self.last[name] = [rate]
    if epoch >= self.warmup:
      self.rates.setdefault(name, []).append(rate)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--data_path", default=None, help="the credit-card CSV(.gz); default synthetic")
  p.add_argument("--synthetic_rows", type=int, default=284_807)
  p.add_argument("--rounds", type=int, default=5, help="timed epochs of each contender")
  p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (tracing, buffers)")
  p.add_argument("--anchor_steps", type=int, default=40,
                 help="Keras steps per timed epoch (the tutorial's epoch is 278 steps; its rate "
                      "does not depend on the epoch length once the shuffle buffers are full)")
  p.add_argument("--engine_steps", type=int, default=400,
                 help="engine steps per timed round (run as main.py's epochs)")
  p.add_argument("--epoch_steps", type=int, default=None,
                 help="steps per engine epoch: one compiled call and one metric read-out "
                      "(default: main.py's, DEFAULT_STEPS_PER_EPOCH; 20 before 2026-12-01 07:55)")
  p.add_argument("--oversample_chunk", type=int, default=None, help="override the default")
  p.add_argument("--steps_per_loop", type=int, default=None, help="override the default")
  p.add_argument("--jit_compile", default="false", choices=["auto", "true", "false"],
                 help="XLA for the engine's step")
  p.add_argument("--intra_op_threads", type=int, default=0,
                 help="the engine's --intra_op_threads, for the whole process, anchor included "
                      "(0: the engine's auto)")
  p.add_argument("--ensemble", type=int, default=8,
                 help="also time an ensemble of this many members of the same model, in "
                      "member-examples per second (0: skip)")
  p.add_argument("--chunk_sweep", default="",
                 help="comma-separated oversample_chunk values to time as extra contenders "
                      "(engine training and input pipeline), in the same rounds")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", default=None, help="write the figures here")
  args = p.parse_args()

  rss = PeakRss()
  overrides = {k: getattr(args, k) for k in ("oversample_chunk", "steps_per_loop")
               if getattr(args, k) is not None}
  # The anchor's model, batch and balance, not the engine's defaults: the ratio compares the
  # two training loops on the same data and the same model.
  config = Config(model="mlp", strategy="oversample", data_path=args.data_path, seed=args.seed,
                  dataset="creditcard" if args.data_path else "synthetic",
                  synthetic_rows=args.synthetic_rows, jit_compile=args.jit_compile,
                  hidden_units=(16,), dropout=0.5, batch_size=BATCH, learning_rate=1e-3,
                  positive_fraction=0.5, steps_per_epoch=args.epoch_steps,
                  intra_op_threads=args.intra_op_threads, **overrides)
  loop.configure_tensorflow(config)
  distribute.make_strategy(config)
  t0 = time.perf_counter()
  splits = load_splits(config)
  print(f"data: {args.data_path or 'synthetic'}: {len(splits.y_train)} training rows, "
        f"{int(splits.y_train.sum())} positives ({time.perf_counter() - t0:.1f}s to load)",
        flush=True)

  # The engine in both modes, XLA (the default on every device type) and plain, side by side.
  engine = EngineContenders(config.replace(jit_compile="true"), splits,
                            timed_steps=args.engine_steps)
  plain = EngineContenders(config.replace(jit_compile="false"), splits,
                           timed_steps=args.engine_steps)
  anchor = tutorial_model(splits.num_features)
  anchor_ds = keras_recipe.resampled_dataset(splits.x_train, splits.y_train.astype(np.float32),
                                         args.seed)
  rates: dict[str, list[float]] = {}
  contenders = {"engine_oversample": engine.train, "engine_plain": plain.train,
                "input_pipeline": engine.pipeline, "compute_bound": engine.compute_bound,
                "compute_bound_plain": plain.compute_bound}
  ens = f"ensemble{args.ensemble}"
  if args.ensemble:
    ensemble = EngineContenders(config.replace(jit_compile="true", ensemble=args.ensemble),
                                splits, timed_steps=args.engine_steps)
    # Plain, as --jit_compile=auto runs it on CPU.
    ensemble_plain = EngineContenders(config.replace(jit_compile="false", ensemble=args.ensemble),
                                      splits, timed_steps=args.engine_steps)
    # What bounds the ensemble: its stream alone (K members' batches per element) and its
    # compiled loop on one batch in memory, both in member-examples/s.
    contenders.update({f"engine_{ens}": ensemble.train, f"engine_{ens}_plain": ensemble_plain.train,
                       f"input_pipeline_{ens}": ensemble.pipeline,
                       f"compute_bound_{ens}": ensemble.compute_bound})
  order = list(contenders)
  sweep = [int(c) for c in args.chunk_sweep.split(",") if c]
  for chunk in sweep:
    other = EngineContenders(config.replace(oversample_chunk=chunk), splits,
                             timed_steps=args.engine_steps)
    contenders[f"engine_oversample@chunk{chunk}"] = other.train
    contenders[f"input_pipeline@chunk{chunk}"] = other.pipeline
  rounds = _Rounds(contenders, rates, args.warmup)
  rounds.anchor_examples = args.anchor_steps * BATCH
  print(f"{args.warmup} warm-up + {args.rounds} timed rounds: Keras {args.anchor_steps} steps, "
        f"engine {args.engine_steps} steps of {config.batch_size} per round", flush=True)
  anchor.fit(anchor_ds, epochs=args.warmup + args.rounds, steps_per_epoch=args.anchor_steps,
             verbose=0, callbacks=[rounds.callback])
  peak = rss.stop()

  base = float(np.median(rates["anchor_keras_fit"]))
  report = {}
  for name in ["anchor_keras_fit"] + order:
    median = float(np.median(rates[name]))
    report[name] = {"examples_per_second": median, "ratio_to_anchor": median / base,
                    "rounds": [float(r) for r in rates[name]]}
  rate = lambda name: report[name]["examples_per_second"]  # noqa: E731
  train = rate("engine_oversample")
  report["ratios"] = {
      "engine_over_anchor": train / base,
      "xla_over_plain": train / rate("engine_plain"),
      "plain_compute_bound_over_plain": rate("compute_bound_plain") / rate("engine_plain"),
      **({f"{ens}_over_engine": rate(f"engine_{ens}") / train,
          f"{ens}_plain_over_plain": rate(f"engine_{ens}_plain") / rate("engine_plain"),
          f"{ens}_pipeline_over_engine": rate(f"input_pipeline_{ens}") / train,
          f"{ens}_compute_bound_over_engine": rate(f"compute_bound_{ens}") / train}
         if args.ensemble else {}),
      "pipeline_over_engine": rate("input_pipeline") / train,
      "compute_bound_over_engine": rate("compute_bound") / train,
  }
  if sweep:
    report["chunk_sweep"] = {
        str(c): {kind: float(np.median(rates[f"{kind}@chunk{c}"]))
                 for kind in ("engine_oversample", "input_pipeline")} for c in sweep}
  report["pipeline_positive_share"] = engine.positives_pulled / max(1, engine.examples_pulled)
  report["peak_rss_bytes"] = int(peak)
  threads = tf.config.threading.get_intra_op_parallelism_threads()  # 0: TensorFlow's default
  report["setup"] = {
      "data": args.data_path or f"synthetic({args.synthetic_rows})",
      "rounds": args.rounds, "warmup": args.warmup, "anchor_steps_per_round": args.anchor_steps,
      "engine_steps_per_round": args.engine_steps, "batch_size": config.batch_size,
      "oversample_chunk": config.oversample_chunk, "steps_per_loop": config.steps_per_loop,
      "engine_epoch_steps": engine.epoch_steps, "jit_compile": config.jit_compile,
      "intra_op_threads": threads,
  }
  report["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "processor": platform.processor() or platform.machine(),
                       "load_average_1min": os.getloadavg()[0],
                       "tensorflow": tf.__version__, "python": platform.python_version()}

  print(f"\n{'':<26}{'examples/s':>14}{'x anchor':>10}{'rounds min-max':>26}")
  for name in ["anchor_keras_fit"] + order:
    r = report[name]
    print(f"{name:<26}{r['examples_per_second']:>14,.0f}{r['ratio_to_anchor']:>10.1f}"
          f"{min(r['rounds']):>14,.0f}-{max(r['rounds']):,.0f}")
  for c in sweep:
    r = report["chunk_sweep"][str(c)]
    print(f"  chunk {c:4d}: engine {r['engine_oversample']:>12,.0f}  pipeline "
          f"{r['input_pipeline']:>12,.0f}  (x anchor {r['engine_oversample'] / base:.1f} / "
          f"{r['input_pipeline'] / base:.1f})")
  ratios = report["ratios"]
  print(f"\nengine (XLA) / anchor    {ratios['engine_over_anchor']:8.1f}  (bar >= 60)")
  print(f"engine XLA / plain       {ratios['xla_over_plain']:8.2f}  (bar >= 2)")
  print(f"compute bound / engine   {ratios['compute_bound_over_engine']:8.2f}  (XLA; bar <= 1.3)")
  print(f"  the same, plain        {ratios['plain_compute_bound_over_plain']:8.2f}")
  print(f"pipeline / engine        {ratios['pipeline_over_engine']:8.2f}  (bar >= 1.5)")
  if args.ensemble:
    print(f"ensemble of {args.ensemble} / engine    "
          f"{ratios[f'{ens}_over_engine']:8.2f}  (member-examples/s; bar >= 2)")
    print(f"  the same, plain        {ratios[f'{ens}_plain_over_plain']:8.2f}")
    print(f"  its stream alone       {ratios[f'{ens}_pipeline_over_engine']:8.2f}"
          f"  its compute bound {ratios[f'{ens}_compute_bound_over_engine']:.2f}"
          "  (over the single model's training, member-examples/s)")
  print(f"pipeline positive share  {report['pipeline_positive_share']:8.4f}")
  print(f"peak RSS                 {peak / 2**20:8.0f} MiB")
  print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"TensorFlow {tf.__version__}, intra-op threads {threads or 'default'}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  main()

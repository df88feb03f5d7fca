"""Choosing and creating the `tf.distribute` strategy a run trains under."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile

import tensorflow as tf

from engine.config import Config, ConfigError


def split_cpu(n: int) -> None:
  """Splits the first CPU into `n` logical devices, so multi-replica code runs without GPUs.

  Must run before TensorFlow initialises its devices (before any op runs).
  """
  if n <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
  except RuntimeError as e:
    raise ConfigError(f"invalid --logical_cpus={n}: TensorFlow is already initialised ({e})")


# Small CPUs train faster with one intra-op thread: the steps' ops are too small to gain from
# splitting, and the split threads take the cores the input stream needs (benchmarks/
# throughput.py on 2 cores, figures in BUILD.md "Performance": one model and ensembles alike).
# Larger machines keep TensorFlow's default: nobody has benchmarked them for this engine.
SMALL_CPU_CORES = 2


def intra_op_threads(config: Config, *, cores: int | None, accelerator: bool,
                     environment: dict) -> tuple[int, str]:
  """`--intra_op_threads`: (threads, why); 0 threads leaves TensorFlow's default."""
  if config.intra_op_threads:
    return config.intra_op_threads, f"--intra_op_threads={config.intra_op_threads}"
  if "TF_NUM_INTRAOP_THREADS" in environment:
    return 0, "auto: TF_NUM_INTRAOP_THREADS is set"
  if accelerator or config.distribution == "tpu":
    return 0, "auto: an accelerator trains"
  if cores is not None and cores <= SMALL_CPU_CORES:
    return 1, f"auto: {cores} CPU cores, as measured"
  return 0, f"auto: {cores} CPU cores"


def set_intra_op_threads(config: Config) -> None:
  """Sets TensorFlow's intra-op pool (`intra_op_threads`) and logs the choice.

  Must run before TensorFlow initialises its devices (before any op runs).
  """
  n, why = intra_op_threads(config, cores=os.cpu_count(),
                            accelerator=bool(tf.config.list_physical_devices("GPU")),
                            environment=os.environ)
  if n:
    try:
      tf.config.threading.set_intra_op_parallelism_threads(n)
    except RuntimeError as e:  # TensorFlow already runs in this process.
      if config.intra_op_threads:
        raise ConfigError(f"invalid --intra_op_threads={n}: TensorFlow is already initialised "
                          f"({e})")
      logging.info("Intra-op threads: TensorFlow's default (%s, but already initialised)", why)
      return
    logging.info("Intra-op threads: %d (%s)", n, why)
  else:
    logging.info("Intra-op threads: TensorFlow's default (%s)", why)


# XLA where the benchmarks found it faster, by device type (benchmarks/throughput.py, figures
# in BUILD.md "Performance"). On a small CPU the compiled step trains at about the plain one's
# rate, and the headline command is slower with it (the compile is not paid back): not worth a
# compiler on CPU. Nor for ensembles there: default members gain nothing, and wide members
# (256x256) train slower with XLA, whose CPU code for the larger matmuls loses what fusing the
# small ops wins. On GPUs and TPUs XLA is how a step of many small ops becomes a few kernels.
XLA_BY_DEVICE = {"CPU": False, "GPU": True, "TPU": True}


def resolve_jit_compile(config: Config) -> bool:
  """`--jit_compile`: true, false, or auto: XLA_BY_DEVICE for the device this process trains on.
  The choice is logged, with why.
  """
  if config.jit_compile != "auto":
    on, why = config.jit_compile == "true", f"--jit_compile={config.jit_compile}"
  else:
    device = ("TPU" if config.distribution == "tpu" else
              "GPU" if tf.config.list_logical_devices("GPU") else "CPU")
    on, why = XLA_BY_DEVICE[device], f"--jit_compile=auto on {device}, as measured"
  logging.info("XLA %s for the training step and the scoring (%s)", "on" if on else "off", why)
  return on


def resolve_distribution(config: Config) -> str:
  """`auto` picks mirrored for several GPUs, one_device for one, default otherwise."""
  if config.distribution != "auto":
    return config.distribution
  gpus = tf.config.list_logical_devices("GPU")
  if len(gpus) > 1:
    return "mirrored"
  if len(gpus) == 1:
    return "one_device"
  if config.logical_cpus > 1:
    return "mirrored"
  return "default"


def _mirrored_devices(config: Config) -> list[str] | None:
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return None  # MirroredStrategy's own choice: all GPUs.
  # On CPU only, mirror across the logical CPUs (one replica when the CPU is not split).
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_tpu_strategy(tpu: str, resolver_cls=None) -> tf.distribute.Strategy:
  """Connects to a TPU (a name, or grpc://host:port) and returns a TPUStrategy."""
  resolver_cls = resolver_cls or tf.distribute.cluster_resolver.TPUClusterResolver
  try:
    resolver = resolver_cls(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    # No such TPU, no metadata server outside Google Cloud, an unreachable address: the user's
    # flag is wrong (or the TPU is down); one line, not a traceback.
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"invalid --tpu={tpu!r}: cannot connect to the TPU ({first})") from None
  return tf.distribute.TPUStrategy(resolver)


def make_strategy(config: Config) -> tuple[tf.distribute.Strategy, str]:
  """Returns the strategy and the resolved distribution name."""
  name = resolve_distribution(config)
  if name == "default":
    return tf.distribute.get_strategy(), name
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0"), name
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(devices=_mirrored_devices(config)), name
  if name == "multi_worker":
    if not os.environ.get("TF_CONFIG"):
      raise ConfigError("invalid --distribution=multi_worker: the TF_CONFIG environment "
                        "variable is not set (it names the cluster and this worker's task)")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except ValueError as e:
      raise ConfigError(f"invalid TF_CONFIG: not JSON ({e})") from None
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options), name
  if name == "tpu":
    return make_tpu_strategy(config.tpu), name
  raise ConfigError(f"invalid --distribution={name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True where this process writes checkpoints, summaries and results."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type in (None, "chief"):
    return True
  cluster = resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def log_strategy(strategy: tf.distribute.Strategy, name: str) -> None:
  logging.info("Distribution: %s (%s), %d replica(s)", name, type(strategy).__name__,
               strategy.num_replicas_in_sync)


# Files of a run a worker needs to resume it: the chief's, copied into the worker's own directory.
_RUN_STATE = ("config.json", "preprocessing.json", "checkpoints", "best")


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Blocks until every worker of a multi-worker run gets here; a no-op otherwise.

  One all-reduce of a constant. Used before the chief writes anything (so other workers copy the
  run state first) and before exit: a worker that leaves while another is still in a collective
  makes that one wait for the coordination service's timeout.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return
  strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """True if `flag` is True on any worker of a multi-worker run; `flag` itself otherwise.

  A SIGTERM reaches one worker, but every worker must stop at the same step: one that stops
  alone strands the others in their next all-reduce. One all-reduce (sum) of the flags makes the
  decision common. Every worker must call this the same number of times.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return flag
  value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
  return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy() > 0)


@contextlib.contextmanager
def worker_directory(strategy: tf.distribute.Strategy, model_dir: str):
  """Yields the directory this process writes the run to.

  The chief (and any single-process run) writes to `model_dir`. Other workers of a
  MultiWorkerMirroredStrategy must still save checkpoints (the save is a collective every worker
  joins), so they write to a temporary directory, removed on exit, seeded with a copy of the
  chief's run state so that they resume from the same checkpoint. Workers share `model_dir`'s
  path (one file system, or the same path on each machine).
  """
  if is_chief(strategy):
    barrier(strategy)
    yield model_dir
    barrier(strategy)
    return
  work_dir = tempfile.mkdtemp(prefix="imbalanced-engine-worker-")
  try:
    for name in _RUN_STATE:
      src = os.path.join(model_dir, name)
      if os.path.isdir(src):
        shutil.copytree(src, os.path.join(work_dir, name))
      elif os.path.isfile(src):
        shutil.copy2(src, os.path.join(work_dir, name))
    logging.info("Not the chief: writing to the temporary directory %s (removed at exit)",
                 work_dir)
    barrier(strategy)  # The chief writes nothing before every copy is taken.
    yield work_dir
    barrier(strategy)
  finally:
    shutil.rmtree(work_dir, ignore_errors=True)

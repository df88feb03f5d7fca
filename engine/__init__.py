"""imbalanced-engine's training engine. Entry point: `train_and_evaluate(config, model_dir)`.

`engine.config` imports no TensorFlow, and neither does importing this package: the names from
engine.loop load on first use (PEP 562). main.py builds its config and starts reading the data
while TensorFlow is still importing, the longest part of its start-up.
"""

from engine.config import Config, ConfigError

__all__ = ["Config", "ConfigError", "NumericalError", "WriteError", "train_and_evaluate"]


def __getattr__(name: str):
  if name in ("NumericalError", "train_and_evaluate"):
    from engine import loop
    return getattr(loop, name)
  if name == "WriteError":
    from engine.write_guard import WriteError
    return WriteError
  raise AttributeError(f"module 'engine' has no attribute {name!r}")

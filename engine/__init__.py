"""imbalanced-engine's training engine. Entry point: `train_and_evaluate(config, model_dir)`."""

from engine.config import Config, ConfigError
from engine.loop import NumericalError, train_and_evaluate

__all__ = ["Config", "ConfigError", "NumericalError", "train_and_evaluate"]

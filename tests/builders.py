"""Models for tests: the engine's `models.build` on a plain numeric layout."""

from __future__ import annotations

from engine import models
from input_pipeline import layout


def build_model(config, *, num_features: int, output_bias: float):
  """The model `config` names, on `num_features` numeric features."""
  return models.build(config, layout.numeric_only(num_features), output_bias=output_bias)


def logits(model, x, **kwargs):
  """Member-major logits [K, B] as a numpy array."""
  return models.member_logits(model, x, **kwargs).numpy()


def spec(*, strategy: str = "baseline", positive_fraction: float = 0.5, **fields):
  """The `datasets.StreamSpec` of `strategy`'s training stream (keywords as StreamSpec's)."""
  from engine import strategies
  from input_pipeline.datasets import StreamSpec
  share = strategies.get(strategy).stream_share(positive_fraction)
  return StreamSpec(positive_share=share, **fields)

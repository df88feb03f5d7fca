"""TabM: a parameter-efficient ensemble of K MLPs trained as one model, for the engine's plug-in
contract (`build(layout, config)` -> a Keras layer mapping rows [B, F] to logits [B, K]).

Architectures (`tabm_arch`):
  * "tabm": every Dense layer is a BatchEnsemble layer, W shared by the K members and
    member-specific scalings r (input) and s (output) and biases: y = ((x * r_k) W) * s_k + b_k.
    TabM's initialisation: only the first layer's r differs between members (random signs, or
    N(0, 1) after numerical embeddings, one value per feature); every other r and s starts at 1,
    and all K biases of a layer start equal.
  * "tabm-mini": only one member-specific scaling, on the input; the MLP is shared.
  * "tabm-packed": K fully independent MLPs (a plain deep ensemble, stacked).
Each member has its own linear head. The members see the same rows (`own_rows = False`) and
one early stop watches their ensemble; the prediction is the mean of their probabilities. As
in the reference, the loss is the mean of the members' losses (the engine takes it for members
that share weights, engine/losses/__init__.py).

Optional, numeric features only (positions `layout.numeric`; missing flags and one-hot blocks
enter the backbone as they are, one first-layer scaling each):
  * `input_transform="quantile_normal"`: a fixed piecewise-linear map of each feature from its
    training quantiles (`layout.quantiles`) to the standard normal's, before any embedding.

  * numerical embeddings before the backbone (`num_embeddings`), shared by the members ("auto",
    the default: piecewise_linear on a table of few numeric features, none on a wide one):
    - "periodic": PLR, x -> ReLU(Linear([cos(2 pi f x), sin(2 pi f x)])), frequencies f ~
      N(0, sigma) truncated at 3 sigma; "lite" shares the Linear between features.
    - "piecewise_linear": piecewise-linear encoding on bins at the training-split quantiles,
      then a per-feature linear map (TabM's "version B": a linear embedding plus a
      zero-initialised piecewise-linear part, so training starts from the linear embedding).

Papers: Gorishniy, Kotelnikov, Babenko, "TabM: Advancing Tabular Deep Learning with
Parameter-Efficient Ensembling" (ICLR 2025); Wen, Tran, Ba, "BatchEnsemble: an Alternative
Approach to Efficient Ensemble and Lifelong Learning" (ICLR 2020); Gorishniy, Rubachev, Babenko,
"On Embeddings for Numerical Features in Tabular Deep Learning" (NeurIPS 2022). Reference code:
github.com/yandex-research/tabm, github.com/yandex-research/rtdl-num-embeddings.
"""

from __future__ import annotations

import logging
import math
import statistics

import keras
import numpy as np
import tensorflow as tf

from engine.layers import replica_dropout

# What a run of this family uses for the fields it does not set (engine/config reads this
# literal without importing the module). Chosen on validation (BUILD.md, "Ablation of
# `--model=tabm`"). K (`ensemble`): the paper's default is 32; the step's cost grows linearly
# with K (every member scores every row), so a CPU gets fewer.
DEFAULTS = {
    "ensemble": 8,
    "hidden_units": (128, 128),
    "dropout": 0.1,
    "input_transform": "quantile_normal",
    "batch_size": 2048,
    "oversample_chunk": 8,
    "learning_rate": 2e-3,
    "steps_per_epoch": 100,
    "patience": 6,
    "num_embeddings": "auto",
    "n_bins": 48,
}
ARCHS = ("tabm", "tabm-mini", "tabm-packed")
EMBEDDINGS = ("none", "periodic", "piecewise_linear")
# `num_embeddings="auto"`: piecewise-linear embeddings up to this many numeric features, none
# above. Chosen on validation (BUILD.md, "Numeric embeddings by default"): they paid on narrow
# tables of raw business columns, not on the wide credit-card set, where they cost twice.
AUTO_EMBEDDINGS_MAX_FEATURES = 16


def embeddings_for(name: str, num_numeric: int) -> str:
  """The embeddings a run gets: `name`, or for "auto" the choice by the numeric width."""
  if name != "auto":
    return name
  return "piecewise_linear" if 0 < num_numeric <= AUTO_EMBEDDINGS_MAX_FEATURES else "none"

TRANSFORMS = ("none", "quantile_normal")
# The outermost quantiles (the training minimum and maximum) map to the normal quantiles of
# these probabilities instead of -inf and +inf.
QUANTILE_TAIL = 2.5e-6


def _rsqrt_uniform(rng, shape, fan_in):
  # PyTorch's nn.Linear default, which the reference TabM uses for every linear layer.
  bound = 1.0 / math.sqrt(fan_in)
  return rng.uniform(-bound, bound, shape).astype(np.float32)


def _bin_edges(quantiles: np.ndarray, n_bins: int) -> list[np.ndarray]:
  """Per feature, the strictly increasing edges of about n_bins quantile bins."""
  q = np.asarray(quantiles, np.float64)
  positions = np.unique(np.round(np.linspace(0, q.shape[1] - 1, n_bins + 1)).astype(int))
  edges = []
  for row in q[:, positions]:
    e = np.unique(row)
    if len(e) < 2:  # A constant feature: one unit-wide bin keeps the encoding finite.
      e = np.array([e[0], e[0] + 1.0])
    edges.append(e)
  return edges


class TabM(keras.layers.Layer):
  """Rows [B, F] -> logits [B, K]."""

  # The members share the backbone's kernels, so they train on the same rows (x [B, F]).
  own_rows = False

  def __init__(self, *, num_features, numeric, quantiles=None, arch="tabm",
               k=DEFAULTS["ensemble"], hidden_units=DEFAULTS["hidden_units"], dropout=0.1, num_embeddings="none", d_embedding=16,
               n_frequencies=16, frequency_scale=0.1, lite=True, n_bins=16, output_bias=0.0,
               seed=0, scaling_init=None, input_transform="none", **kwargs):
    super().__init__(**kwargs)
    if arch not in ARCHS:
      raise ValueError(f"tabm_arch must be one of {ARCHS}, got {arch!r}")
    if input_transform not in TRANSFORMS:
      raise ValueError(f"input_transform must be one of {TRANSFORMS}, got {input_transform!r}")
    if num_embeddings not in EMBEDDINGS:
      raise ValueError(f"num_embeddings must be one of {EMBEDDINGS}, got {num_embeddings!r}")
    self.num_features = int(num_features)
    self.numeric = [int(i) for i in numeric]
    self.others = [i for i in range(self.num_features) if i not in set(self.numeric)]
    self.arch, self.k = arch, int(k)
    self.hidden_units = tuple(int(u) for u in hidden_units)
    self.rate = float(dropout)
    self.emb = num_embeddings if self.numeric else "none"
    self.d_embedding, self.n_frequencies = int(d_embedding), int(n_frequencies)
    self.frequency_scale, self.lite, self.n_bins = float(frequency_scale), bool(lite), int(n_bins)
    self.initial_bias, self.seed = float(output_bias), int(seed)
    self.scaling_init = scaling_init or ("normal" if self.emb != "none" else "random-signs")
    self.transform = input_transform if self.numeric else "none"
    if (self.emb == "piecewise_linear" or self.transform != "none") and quantiles is None:
      raise ValueError(f"{num_embeddings} embeddings and the {input_transform} transform need "
                       "the training quantiles")
    if self.transform == "quantile_normal":
      quantiles = self._quantile_map(quantiles)
    if self.emb == "piecewise_linear":
      self.edges = _bin_edges(quantiles, self.n_bins)

  def _quantile_map(self, quantiles):
    """Fixes the piecewise-linear map from each feature's training quantiles to the standard
    normal's; returns the quantiles as they are after the map (for the bins)."""
    q = np.asarray(quantiles, np.float64)
    probs = np.clip(np.linspace(0.0, 1.0, q.shape[1]), QUANTILE_TAIL, 1.0 - QUANTILE_TAIL)
    normal = np.array([statistics.NormalDist().inv_cdf(p) for p in probs])
    m = q.shape[1] - 1
    self._qn = {"edge": np.zeros((len(q), m)), "width": np.zeros((len(q), m)),
                "slope": np.zeros((len(q), m)), "base": np.zeros((len(q),))}
    for i, row in enumerate(q):
      # Equal neighbours (a value many rows share) are merged: the map jumps over them to the
      # mean of their normal quantiles.
      edges, inverse = np.unique(row, return_inverse=True)
      targets = np.array([normal[inverse == j].mean() for j in range(len(edges))])
      if len(edges) < 2:
        self._qn["base"][i] = 0.0
        continue
      n = len(edges) - 1
      self._qn["edge"][i, :n] = edges[:-1]
      self._qn["width"][i, :n] = np.diff(edges)
      self._qn["slope"][i, :n] = np.diff(targets) / np.diff(edges)
      self._qn["base"][i] = targets[0]
    return self._qn_numpy(q)

  def _qn_numpy(self, x):
    """The quantile map on numpy values [n, m] (row i: values of feature i)."""
    d = self._qn
    v = np.clip(x[:, :, None] - d["edge"][:, None, :], 0.0, d["width"][:, None, :])
    return d["base"][:, None] + (v * d["slope"][:, None, :]).sum(-1)

  def _const(self, name, value, trainable=True):
    value = np.asarray(value, np.float32)
    variable = self.add_weight(name=name, shape=value.shape, trainable=trainable,
                               initializer=lambda shape, dtype=None: tf.constant(value, dtype))
    # An attribute of its own, not only a dict or list entry: tf.train.Checkpoint follows a
    # Keras 3 layer's attributes, not the variables held in Python containers.
    setattr(self, f"w_{name}", variable)
    return variable

  def build(self, input_shape):
    rng = np.random.default_rng(self.seed)
    chunks = self._build_inputs(rng)
    self._build_backbone(rng, chunks)
    super().build(input_shape)

  def _build_inputs(self, rng) -> list[int]:
    """The input transform and the numeric embeddings; returns the width of each feature's
    representation (one first-layer scaling per feature)."""
    n, d = len(self.numeric), self.d_embedding
    if self.transform == "quantile_normal":
      self.qn_edge = self._const("qn_edge", self._qn["edge"], trainable=False)
      self.qn_width = self._const("qn_width", self._qn["width"], trainable=False)
      self.qn_slope = self._const("qn_slope", self._qn["slope"], trainable=False)
      self.qn_base = self._const("qn_base", self._qn["base"], trainable=False)
    chunks = []  # The width of each feature's representation: one first scaling per feature.
    if self.emb == "periodic":
      f = rng.normal(0.0, self.frequency_scale, (n, self.n_frequencies))
      f = np.clip(f, -3 * self.frequency_scale, 3 * self.frequency_scale)
      self.frequencies = self._const("frequencies", f)
      m = 2 * self.n_frequencies
      shape = (m, d) if self.lite else (n, m, d)
      self.plr_kernel = self._const("plr_kernel", _rsqrt_uniform(rng, shape, m))
      self.plr_bias = self._const("plr_bias", _rsqrt_uniform(rng, (d,) if self.lite else (n, d), m))
      chunks += [d] * n
    elif self.emb == "piecewise_linear":
      # Encoding component j of a feature: (x - e_j) / (e_{j+1} - e_j), clipped to [0, 1], the
      # first clipped only above and the last only below (so values beyond the training range
      # stay distinguishable); components past a feature's own number of bins stay 0.
      max_bins = max(len(e) - 1 for e in self.edges)
      w = np.zeros((n, max_bins), np.float32); b = np.zeros((n, max_bins), np.float32)
      lo = np.zeros((n, max_bins), np.float32); hi = np.ones((n, max_bins), np.float32)
      for i, e in enumerate(self.edges):
        width = np.diff(e); nb = len(width)
        cols = list(range(nb - 1)) + [max_bins - 1]
        w[i, cols] = 1.0 / width; b[i, cols] = -e[:-1] / width
        lo[i, 0] = -np.inf; hi[i, max_bins - 1] = np.inf
        if nb == 1:
          lo[i, max_bins - 1] = -np.inf
      self.ple_w = self._const("ple_weight", w, trainable=False)
      self.ple_b = self._const("ple_bias", b, trainable=False)
      self.ple_lo = self._const("ple_low", lo, trainable=False)
      self.ple_hi = self._const("ple_high", hi, trainable=False)
      self.lin0_w = self._const("linear0_kernel", _rsqrt_uniform(rng, (n, d), d))
      self.lin0_b = self._const("linear0_bias", _rsqrt_uniform(rng, (n, d), d))
      self.ple_kernel = self._const("ple_kernel", np.zeros((n, max_bins, d)))
      chunks += [d] * n
    else:
      chunks += [1] * n
    return chunks + [1] * len(self.others)

  def _build_backbone(self, rng, chunks: list[int]) -> None:
    """The K members' layers and heads on inputs of the widths `chunks`."""
    d_in = sum(chunks)

    k = self.k
    if self.scaling_init == "random-signs":
      per_chunk = rng.integers(0, 2, (k, len(chunks))) * 2.0 - 1.0
    else:
      per_chunk = rng.normal(0.0, 1.0, (k, len(chunks)))
    r0 = np.repeat(per_chunk, chunks, axis=1)

    self.layers_ = []
    fan = d_in
    for i, units in enumerate(self.hidden_units):
      layer = {}
      if self.arch == "tabm-packed":
        layer["kernel"] = self._const(f"kernel_{i}", _rsqrt_uniform(rng, (k, fan, units), fan))
        layer["bias"] = self._const(f"bias_{i}", _rsqrt_uniform(rng, (k, units), fan))
      else:
        layer["kernel"] = self._const(f"kernel_{i}", _rsqrt_uniform(rng, (fan, units), fan))
        shared_bias = _rsqrt_uniform(rng, (units,), fan)
        if self.arch == "tabm":
          layer["r"] = self._const(f"r_{i}", r0 if i == 0 else np.ones((k, fan)))
          layer["s"] = self._const(f"s_{i}", np.ones((k, units)))
          layer["bias"] = self._const(f"bias_{i}", np.tile(shared_bias, (k, 1)))
        else:
          if i == 0:
            layer["r"] = self._const("r_0", r0)
          layer["bias"] = self._const(f"bias_{i}", shared_bias)
      self.layers_.append(layer)
      fan = units
    self.head_kernel = self._const("head_kernel", _rsqrt_uniform(rng, (k, fan), fan))
    self.head_bias = self._const("head_bias", np.full((k,), self.initial_bias))

  @property
  def output_bias(self):
    """The heads' bias [K]: where the engine's initial bias (log prior odds) goes."""
    return self.head_bias

  def _embed(self, x):
    """[B, F] -> [B, d_in]: numeric features embedded (or as they are), the others after."""
    if self.emb == "none" and self.transform == "none":
      return x
    xn = tf.gather(x, self.numeric, axis=1)
    batch = tf.shape(x)[0]
    if self.transform == "quantile_normal":
      v = tf.clip_by_value(xn[:, :, None] - self.qn_edge, 0.0, self.qn_width)
      xn = self.qn_base + tf.reduce_sum(v * self.qn_slope, axis=-1)
    if self.emb == "none":
      return tf.concat([xn, tf.gather(x, self.others, axis=1)], axis=1) if self.others else xn
    if self.emb == "periodic":
      v = 2.0 * math.pi * self.frequencies * xn[:, :, None]
      v = tf.concat([tf.cos(v), tf.sin(v)], axis=-1)  # [B, n, 2 nf]
      if self.lite:
        e = tf.reshape(tf.matmul(tf.reshape(v, [-1, v.shape[-1]]), self.plr_kernel),
                       [batch, len(self.numeric), self.d_embedding]) + self.plr_bias
      else:
        e = tf.einsum("bnm,nmd->bnd", v, self.plr_kernel) + self.plr_bias
      e = tf.nn.relu(e)
    else:
      v = self.ple_w * xn[:, :, None] + self.ple_b
      v = tf.minimum(tf.maximum(v, self.ple_lo), self.ple_hi)  # [B, n, bins]
      e = self.lin0_w * xn[:, :, None] + self.lin0_b + tf.einsum("bnm,nmd->bnd", v,
                                                                  self.ple_kernel)
    e = tf.reshape(e, [batch, len(self.numeric) * self.d_embedding])
    if self.others:
      e = tf.concat([e, tf.gather(x, self.others, axis=1)], axis=1)
    return e

  def call(self, x, training=False, dropout_seed=None):
    x = tf.convert_to_tensor(x, tf.float32)
    h = self._embed(x)
    batch, k = tf.shape(h)[0], self.k
    if self.arch == "tabm-packed":
      h = tf.broadcast_to(h[None], tf.stack([k, batch, h.shape[-1]]))  # [K, B, D]
    else:
      h = h[:, None, :] * self.layers_[0]["r"]  # [B, K, D]: the members differ from here on
    for i, layer in enumerate(self.layers_):
      units = layer["kernel"].shape[-1]
      if self.arch == "tabm-packed":
        h = tf.matmul(h, layer["kernel"]) + layer["bias"][:, None, :]
      else:
        if self.arch == "tabm" and i > 0:
          h = h * layer["r"]
        # One plain [B*K, D] x [D, H] product: the kernel is shared, so no batched matmul.
        h = tf.reshape(tf.matmul(tf.reshape(h, [-1, h.shape[-1]]), layer["kernel"]),
                       tf.stack([batch, k, units]))
        if self.arch == "tabm":
          h = h * layer["s"]
        h = h + layer["bias"]
      h = tf.nn.relu(h)
      if training and self.rate > 0.0:
        if dropout_seed is None:
          raise ValueError("training with dropout needs a dropout_seed")
        h = replica_dropout(h, self.rate, tf.random.experimental.stateless_fold_in(dropout_seed, i))
    if self.arch == "tabm-packed":
      h = tf.transpose(h, [1, 0, 2])
    return tf.reduce_sum(h * self.head_kernel, axis=-1) + self.head_bias  # [B, K]


def build(layout, config, *, output_bias: float = 0.0) -> TabM:
  """The engine's plug-in entry point: a built TabM for the layout's features."""
  get = lambda name, default: getattr(config, name, default)  # noqa: E731
  defaults = lambda name: get(name, DEFAULTS[name])  # noqa: E731
  embeddings = embeddings_for(defaults("num_embeddings"), len(layout.numeric))
  if embeddings != defaults("num_embeddings"):
    logging.info("--num_embeddings=auto: %s (%d numeric features)", embeddings, len(layout.numeric))
  model = TabM(
      num_features=layout.num_features, numeric=list(layout.numeric),
      quantiles=getattr(layout, "quantiles", None), arch=get("tabm_arch", "tabm"),
      k=int(defaults("ensemble")), hidden_units=tuple(defaults("hidden_units")),
      dropout=float(defaults("dropout")), num_embeddings=embeddings,
      d_embedding=int(get("d_embedding", 16)), n_frequencies=int(get("n_frequencies", 16)),
      frequency_scale=float(get("frequency_scale", 0.1)), lite=bool(get("embedding_lite", True)),
      n_bins=int(get("n_bins", 16)), input_transform=defaults("input_transform"),
      output_bias=output_bias, seed=int(get("seed", 0)),
      name="tabm")
  model(tf.zeros([1, layout.num_features], tf.float32))
  return model

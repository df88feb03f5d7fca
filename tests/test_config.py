import re

import pytest

from engine.config import Config, ConfigError


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "--epochs=0"),
    ("epochs", -1, "--epochs=-1"),
    ("batch_size", 0, "--batch_size=0"),
    ("patience", 0, "--patience=0"),
    ("steps_per_loop", 0, "--steps_per_loop=0"),
    ("steps_per_epoch", 0, "--steps_per_epoch=0"),
    ("learning_rate", 0.0, "--learning_rate=0.0"),
    ("learning_rate", -1e-3, "--learning_rate=-0.001"),
    ("learning_rate", float("nan"), "--learning_rate=nan"),
    ("strategy", "smote", "--strategy='smote'"),
    ("distribution", "horovod", "--distribution='horovod'"),
    ("calibration", "isotonic", "--calibration='isotonic'"),
    ("dropout", 1.0, "--dropout=1.0"),
    ("dropout", -0.1, "--dropout=-0.1"),
    ("hidden_units", (), "--hidden_units="),
    ("hidden_units", (16, 0), "--hidden_units='16,0'"),
    ("monitor", "prc", "--monitor='prc'"),
    ("monitor", "val_f1", "--monitor='val_f1'"),
    ("validation_fraction", 0.0, "--validation_fraction=0.0"),
    ("test_fraction", 1.0, "--test_fraction=1.0"),
    ("oversample_chunk", 3000, "--oversample_chunk=3000"),
    ("positive_fraction", 0.0, "--positive_fraction=0.0"),
    ("positive_fraction", 1.0, "--positive_fraction=1.0"),
    ("ensemble", 0, "--ensemble=0"),
    ("weight_decay", -1.0, "--weight_decay=-1.0"),
    ("ema_momentum", 1.0, "--ema_momentum=1.0"),
    ("ema_momentum", -0.5, "--ema_momentum=-0.5"),
    ("logical_cpus", -1, "--logical_cpus=-1"),
    ("intra_op_threads", -1, "--intra_op_threads=-1"),
    ("seed", -1, "--seed=-1"),
    ("target_recall", 0.0, "--target_recall=0.0"),
    ("target_recall", 1.01, "--target_recall=1.01"),
    ("fp_cost", 1.0, "pass both or neither"),
    ("fn_cost", 1.0, "pass both or neither"),
])
def test_invalid_values_name_the_flag_and_value(field, value, message):
  with pytest.raises(ConfigError) as e:
    Config(**{field: value})
  assert message in str(e.value)


def test_fractions_must_leave_training_rows():
  with pytest.raises(ConfigError, match="at least 10% for training"):
    Config(validation_fraction=0.5, test_fraction=0.45)


def test_tpu_needs_an_address():
  with pytest.raises(ConfigError, match="--tpu"):
    Config(distribution="tpu")
  assert Config(distribution="tpu", tpu="grpc://10.0.0.2:8470").tpu


def test_chunk_only_constrains_oversample():
  Config(strategy="baseline", batch_size=100, oversample_chunk=64)
  with pytest.raises(ConfigError):
    Config(strategy="oversample", batch_size=100, oversample_chunk=64)


@pytest.mark.parametrize("monitor,higher", [("val_prc", True), ("val_auc", True),
                                            ("val_loss", False), ("val_fn", False),
                                            ("val_recall", True)])
def test_monitor_direction(monitor, higher):
  c = Config(monitor=monitor)
  assert c.monitor_higher_is_better is higher
  assert c.monitor_metric == monitor[4:]


def test_defaults_match_the_documented_recipe():
  c = Config(model="mlp")
  # Chosen by measurement on validation (BUILD.md, "Model quality").
  assert (c.strategy, c.epochs, c.batch_size, c.learning_rate, c.patience, c.monitor) == (
      "oversample", 100, 512, 3e-3, 10, "val_prc")
  assert c.hidden_units == (64,) and c.dropout == 0.2
  # The share follows the table (engine/strategies.py): None means 3x its fraud rate.
  assert (c.positive_fraction, c.ensemble, c.weight_decay) == (None, 1, 0.0)


def test_config_is_frozen_and_serialisable():
  c = Config()
  with pytest.raises(Exception):
    c.epochs = 3  # type: ignore[misc]
  assert '"hidden_units": [\n    64\n  ]' in c.to_json()
  assert c.replace(epochs=3).epochs == 3


@pytest.mark.parametrize("fp,fn,ok", [(1.0, 10.0, True), (0.0, 1.0, True), (0.0, 0.0, False),
                                      (-1.0, 1.0, False), (1.0, float("inf"), False)])
def test_costs(fp, fn, ok):
  if ok:
    assert Config(fp_cost=fp, fn_cost=fn).fn_cost == fn
  else:
    with pytest.raises(ConfigError, match="cost"):
      Config(fp_cost=fp, fn_cost=fn)


@pytest.mark.parametrize("monitor,metric", [("val_prc_exact", "prc"), ("val_auc_exact", "auc")])
def test_the_older_exact_names_mean_the_exact_areas(monitor, metric):
  c = Config(monitor=monitor)
  assert c.monitor_metric == metric and c.monitor_higher_is_better


@pytest.mark.parametrize("changes,message", [
    (dict(split="time"), "invalid --time_column=None: --split=time needs --time_column"),
    (dict(split="hash"), "invalid --split='hash'"),
    (dict(id_columns=("Class",)), "names the label column 'Class'"),
    (dict(categorical_columns=("a",), id_columns=("a",)), "'a' is also in --id_columns"),
    (dict(time_column="t", categorical_columns=("t",)), "'t' is also in --time_column"),
    (dict(prepared_dir="p", split="time", time_column="t"),
     "column roles and split were fixed by --mode=prepare; do not pass --time_column"),
    (dict(prepared_dir="p", id_columns=("i",)), "do not pass --id_columns"),
    (dict(max_categories=0), "invalid --max_categories=0"),
])
def test_column_roles_and_split_are_validated(changes, message):
  with pytest.raises(ConfigError, match=re.escape(message)):
    Config(**changes)


def test_sections_hold_every_field_once_and_flat_names_reach_them():
  from engine.config import SECTIONS, fields
  c = Config(batch_size=256, model="mlp", clip=3.0)
  assert c.train.batch_size == c.batch_size == 256 and c.data.clip == 3.0
  assert c.model.name == "mlp" and c.to_dict()["model"] == "mlp"
  names = [f.name for f in fields()]
  assert len(names) == len(set(names)) == len(c.to_dict())
  assert {f.section for f in fields()} == set(SECTIONS)
  with pytest.raises(ConfigError, match="unknown config field 'batchsize'"):
    Config(batchsize=3)


def test_each_section_validates_itself():
  from engine.config import DataConfig, TrainConfig
  with pytest.raises(ConfigError, match="--clip=0"):
    DataConfig(clip=0)
  with pytest.raises(ConfigError, match="--oversample_chunk=100: must divide --batch_size=512"):
    TrainConfig(oversample_chunk=100)


def test_the_flags_are_the_fields():
  import main
  from engine.config import fields
  for f in fields():
    flag = main.FLAGS[f.name]
    assert flag.help.endswith(f.help)  # absl puts an enum's choices first
    default = list(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    assert flag.default == default, f.name


@pytest.mark.default_family
def test_a_run_that_names_no_model_gets_tabm_and_its_declared_defaults():
  from engine.config import options
  c = Config()
  assert c.model.name == options.DEFAULT_MODEL == "tabm"
  # engine/models/tabm.py's DEFAULTS, chosen on validation (BUILD.md, "Ablation of --model=tabm").
  assert (c.ensemble, c.hidden_units, c.dropout, c.input_transform) == (
      8, (128, 128), 0.1, "quantile_normal")
  assert (c.batch_size, c.learning_rate, c.steps_per_epoch, c.patience) == (2048, 2e-3, 100, 6)
  assert c.oversample_chunk == 8
  assert (c.strategy, c.epochs, c.monitor, c.weight_decay) == ("oversample", 100, "val_prc", 0.0)


@pytest.mark.default_family
def test_a_value_given_beats_the_familys_and_a_new_family_brings_its_own():
  c = Config(batch_size=1024, patience=3)
  assert (c.batch_size, c.patience, c.ensemble) == (1024, 3, 8)
  mlp = c.replace(model="mlp")
  assert (mlp.batch_size, mlp.patience, mlp.ensemble, mlp.hidden_units) == (1024, 3, 1, (64,))
  assert mlp.replace(model="tabm") == c
  assert Config(model="tabm", ensemble=1).ensemble == 1  # an explicit K of 1 is kept
  import pickle
  assert pickle.loads(pickle.dumps(c)).replace(model="mlp") == mlp


@pytest.mark.default_family
def test_the_flags_not_given_are_left_to_the_family():
  import main
  try:
    for args, expected in ((["--strategy=baseline"], ("tabm", 2048, 8)),
                           (["--model=mlp"], ("mlp", 512, 1)),
                           (["--batch_size=256"], ("tabm", 256, 8))):
      main.FLAGS.unparse_flags()
      main.FLAGS(["main.py", *args])
      c = main.config_from_flags()
      assert (c.model.name, c.batch_size, c.ensemble) == expected, args
  finally:
    main.FLAGS.unparse_flags()


def test_every_familys_defaults_are_config_fields_and_valid():
  from engine.config import fields, options, plugins
  names = {f.name for f in fields()}
  assert options.family_defaults("models", "tabm"), "tabm declares its DEFAULTS"
  for family in plugins("models"):
    declared = options.family_defaults("models", family)
    assert set(declared) <= names, (family, set(declared) - names)
    config = Config(model=family)
    for name, value in declared.items():
      assert getattr(config, name) == value, (family, name)

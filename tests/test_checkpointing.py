import os
import time

import numpy as np
import tensorflow as tf

from engine.checkpointing import Checkpoints
from engine.config import Config
from engine.early_stopping import EarlyStopping
from tests.builders import build_model, logits


def _state(seed=0):
  model = build_model(Config(seed=seed), num_features=3, output_bias=0.0)
  optimizer = tf.keras.optimizers.Adam()
  optimizer.build(model.trainable_variables)
  stopper = EarlyStopping(patience=3, higher_is_better=True)
  epoch = tf.Variable(0, dtype=tf.int64)
  return model, optimizer, stopper, epoch


def _checkpoints(model_dir, model, optimizer, stopper, epoch, keep=3, interval=0.0):
  best_model = build_model(Config(seed=7), num_features=3, output_bias=0.0)
  return Checkpoints(str(model_dir), model=model, best_model=best_model, keep=keep,
                     interval_seconds=interval,
                     state=dict(model=model, optimizer=optimizer, early_stopping=stopper,
                                epoch=epoch))


def _train_a_bit(model, optimizer):
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(tf.ones([4, 3])) ** 2)
  optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))


def test_round_trip_restores_everything(tmp_path):
  model, optimizer, stopper, epoch = _state()
  ckpts = _checkpoints(tmp_path, model, optimizer, stopper, epoch)
  _train_a_bit(model, optimizer)
  stopper.update(0.7, 1)
  stopper.update(0.6, 2)
  epoch.assign(2)
  ckpts.save(2)
  saved = [w.copy() for w in model.get_weights()]
  slots = [v.numpy().copy() for v in optimizer.variables]

  model2, optimizer2, stopper2, epoch2 = _state(seed=1)
  ckpts2 = _checkpoints(tmp_path, model2, optimizer2, stopper2, epoch2)
  assert ckpts2.restore_latest().endswith("ckpt-2")
  assert all(np.array_equal(a, b) for a, b in zip(saved, model2.get_weights()))
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(slots, optimizer2.variables))
  assert int(optimizer2.iterations.numpy()) == 1
  assert int(epoch2.numpy()) == 2
  assert stopper2.state() == {"best_value": 0.7, "best_epoch": 1, "wait": 1, "patience": 3}


def test_nothing_to_restore(tmp_path):
  model, optimizer, stopper, epoch = _state()
  assert _checkpoints(tmp_path, model, optimizer, stopper, epoch).restore_latest() is None


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
  model, optimizer, stopper, epoch = _state()
  ckpts = _checkpoints(tmp_path, model, optimizer, stopper, epoch)
  epoch.assign(1)
  ckpts.save(1)
  epoch.assign(2)
  ckpts.save(2)
  data = [f for f in os.listdir(tmp_path / "checkpoints") if f.startswith("ckpt-2.data")]
  with open(tmp_path / "checkpoints" / data[0], "r+b") as f:
    f.truncate(10)

  model2, optimizer2, stopper2, epoch2 = _state()
  ckpts2 = _checkpoints(tmp_path, model2, optimizer2, stopper2, epoch2)
  with caplog.at_level("WARNING"):
    path = ckpts2.restore_latest()
  assert path.endswith("ckpt-1")
  assert int(epoch2.numpy()) == 1
  assert "ckpt-2" in caplog.text


def test_best_weights_are_kept_apart(tmp_path):
  model, optimizer, stopper, epoch = _state()
  ckpts = _checkpoints(tmp_path, model, optimizer, stopper, epoch)
  ckpts.keep_best(1)
  best = [w.copy() for w in model.get_weights()]
  _train_a_bit(model, optimizer)
  ckpts.save(2)
  assert not np.array_equal(best[0], model.get_weights()[0])
  assert ckpts.restore_best().endswith("ckpt-1")
  assert all(np.array_equal(a, b) for a, b in zip(best, model.get_weights()))
  # best/ holds them in the format a model restores from.
  other = build_model(Config(seed=3), num_features=3, output_bias=0.0)
  tf.train.Checkpoint(model=other).read(ckpts.restore_best()).assert_existing_objects_matched()
  assert all(np.array_equal(a, b) for a, b in zip(best, other.get_weights()))


def test_the_latest_checkpoint_holds_the_best_weights_of_its_early_stopping_state(tmp_path):
  # Best weights kept in memory at step 1 (never written to best/ alone), then more training:
  # a resumed run gets them back from the latest checkpoint, with the state that refers to them.
  model, optimizer, stopper, epoch = _state()
  ckpts = _checkpoints(tmp_path, model, optimizer, stopper, epoch)
  stopper.update(0.9, 1)
  ckpts.keep_best(1)
  best = [w.copy() for w in model.get_weights()]
  _train_a_bit(model, optimizer)
  stopper.update(0.5, 2)
  ckpts.save(2)

  model2, optimizer2, stopper2, epoch2 = _state(seed=1)
  ckpts2 = _checkpoints(tmp_path, model2, optimizer2, stopper2, epoch2)
  ckpts2.restore_latest()
  assert ckpts2.saved_step == 2
  assert stopper2.state()["best_epoch"] == 1
  ckpts2.restore_best()
  assert all(np.array_equal(a, b) for a, b in zip(best, model2.get_weights()))


def test_a_save_is_due_after_the_interval(tmp_path):
  model, optimizer, stopper, epoch = _state()
  assert _checkpoints(tmp_path / "a", model, optimizer, stopper, epoch, interval=0.0).due()
  ckpts = _checkpoints(tmp_path / "b", model, optimizer, stopper, epoch, interval=3600.0)
  assert not ckpts.due()
  ckpts.interval_seconds = 0.05
  time.sleep(0.06)
  assert ckpts.due()
  ckpts.save(1)
  assert not ckpts.due()  # counted from the end of the write


def test_keeps_the_last_n(tmp_path):
  model, optimizer, stopper, epoch = _state()
  ckpts = _checkpoints(tmp_path, model, optimizer, stopper, epoch, keep=2)
  for step in range(1, 5):
    ckpts.save(step)
  assert [os.path.basename(p) for p in ckpts.latest_manager.checkpoints] == ["ckpt-3", "ckpt-4"]

"""The end of a run: the exported weights' exact metrics, the threshold, results.json, export.

`validate` is also each epoch's validation pass: it scores the split, fits the calibration and
keeps it in the run, so the epochs and the final report give one name one meaning. `run` is the
`engine.loop.Run` of a training run.
"""

from __future__ import annotations

import logging
import os

from engine import calibration, checkpointing, evaluation, export, run_dir
from engine import threshold as thresholds
from engine.trainer import Evaluation
from engine.write_guard import guard


def independent_members(model) -> bool:
  """An ensemble whose members share no weight: each keeps its own best weights."""
  return bool(model.own_rows) and model.members > 1


def validate(run) -> Evaluation:
  """Scores the validation split, fits the calibration on those scores and keeps it in
  `run.calibration`, and evaluates them with it; with `--calibration=platt` the metrics a fit
  flatters are cross-fitted (engine/calibration.py)."""
  scores = run.trainer.score("validation")
  run.calibration = calibration.fit_method(run.config.calibration, scores.labels,
                                           scores.probabilities)
  out_of_fold = None
  if run.config.calibration == "platt":
    out_of_fold = calibration.cross_fitted(scores.labels, scores.probabilities, run.calibration)
  return run.trainer.evaluate(scores, run.calibration, out_of_fold=out_of_fold)


def final_report(run) -> tuple[dict, dict]:
  """The exact metrics on validation and test of the weights that are exported, and the
  decision threshold.

  Those weights are the best epoch's, or for an ensemble each member's own best epoch's; the
  calibration is fitted again on their validation scores (`validate`), so the validation
  metrics are those of exactly what is exported.

  Returns:
    (results.json's content, {split: (labels, probabilities)}).
  """
  config, state, stopper = run.config, run.state, run.state.early_stopping
  if stopper.should_stop:
    logging.info("Early stopping after epoch %d: %s has not improved for %d epochs (best %.4f at "
                 "epoch %d)", int(state.epoch.numpy()), config.monitor, config.patience,
                 float(stopper.best_value.numpy()), int(stopper.best_epoch.numpy()))
  results = {"weights": checkpointing.restore_reported(run.ckpts, state=state,
                                                         monitor=config.monitor)}
  validation = validate(run)
  test = run.trainer.evaluate(run.trainer.score("test"), run.calibration)
  scored = {e: (r.labels, r.probabilities) for e, r in (("validation", validation), ("test", test))}
  results.update(validation=validation.metrics, test=test.metrics)
  if independent_members(state.model):
    results["members"] = [{"best_epoch": epoch, "validation": v, "test": t} for epoch, v, t in
                          zip(results["weights"]["epochs"], validation.member_areas,
                              test.member_areas)]
  results["threshold"] = thresholds.choose(
      config, val_labels=scored["validation"][0], val_probabilities=scored["validation"][1],
      test_labels=scored["test"][0], test_probabilities=scored["test"][1])
  for warning in results["threshold"]["warnings"]:
    logging.warning("Threshold %.4g: %s", results["threshold"]["value"], warning)
  results.update({
      "strategy": config.strategy, "distribution": run.distribution,
      "num_replicas": run.strategy.num_replicas_in_sync, "epochs_run": int(state.epoch.numpy()),
      "best_epoch": int(stopper.best_epoch.numpy()), "steps": state.step,
      "steps_per_epoch": run.epoch_steps, "train_seconds": float(state.train_seconds.numpy()),
      "monitor": config.monitor, "best_monitor_value": float(stopper.best_value.numpy()),
      "stopped_early": bool(stopper.should_stop), "data": run.data.counts(),
      "ensemble": config.ensemble, "logit_shift": run.trainer.logit_shift,
      "positive_share": config.positive_fraction,
      "calibration": run.calibration.as_dict(),
      "validation_cross_fitted": _cross_fitted_entry(run),
  })
  if run.calibration.why:
    logging.warning("Calibration: %s; the scores are the prior-corrected ones",
                    run.calibration.why)
  return results, scored


def _cross_fitted_entry(run) -> dict | None:
  """results.json's "validation_cross_fitted": which validation metrics are cross-fitted."""
  if run.config.calibration != "platt":
    return None  # Nothing fitted on validation: every metric there is out of sample.
  return {"folds": calibration.FOLDS, "metrics": list(calibration.CROSS_FITTED)}


def publish(run, results: dict, scored: dict) -> None:
  """Summaries, the export and results.json (chief only), then the results table."""
  if run.chief:
    with guard("the results", run.model_dir):
      _write_results(run, results, scored)
  run.summaries.close()
  print(evaluation.results_table(results))


def _write_results(run, results: dict, scored: dict) -> None:
  """The test summaries, the export (the host model holds the reported weights), results.json."""
  run.summaries.scalars("test", results["test"], results["best_epoch"])
  run.summaries.best_epoch(results["validation"], results["best_epoch"],
                           results["weights"].get("epochs"))
  run.summaries.evaluation(results, scored, results["best_epoch"])
  run.summaries.hparams(run.config)
  export_dir = export.export_model(
      run.trainer.host, run.data.preprocessor, threshold=results["threshold"],
      logit_shift=run.trainer.logit_shift, calibration=run.calibration,
      export_dir=os.path.join(run.model_dir, export.EXPORT_DIR))
  logging.info("Exported the %s weights with threshold %.6g to %s",
               results["weights"]["which"], results["threshold"]["value"], export_dir)
  run_dir.write_json(os.path.join(run.model_dir, run_dir.RESULTS_FILE), results)


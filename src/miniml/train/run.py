"""``miniml train``: a tracked training run that ends in a registered model version.

The MLflow run wraps the whole session; a resumed session reopens the same run (its id is kept in the run
state). The model is registered only after training, the test evaluation and the artifact upload succeeded.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniml.tasks.base import TrainConfig
from miniml.train.session import FitOutcome, TrainingSession


@dataclass
class TrainResult:
    """What ``train()`` returns."""

    run_id: str | None
    model_folder: Path
    model_name: str
    model_version: int | None
    metrics: dict[str, float]
    report_dir: Path | None = None


def flat_params(config: TrainConfig) -> dict[str, Any]:
    """The config as MLflow params: ``model.dim``-style keys, scalar values."""
    out: dict[str, Any] = {}
    for key, value in config.model_dump(mode="json", exclude={"tags"}).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def fit(config: TrainConfig, *, resume: bool = False) -> FitOutcome:
    """Train and write the model folder without tracking or registering (benchmarks, quick trials)."""
    session = TrainingSession(config, resume=resume)
    outcome = session.fit()
    session.finish()
    return outcome


def train(
    config: TrainConfig, *, resume: bool = False, session: TrainingSession | None = None
) -> TrainResult:
    """Train with MLflow tracking, evaluate on the test split, log artifacts, register the model version.

    ``session``: a prepared session of another kind (a cluster backend's rank 0 passes its own).
    """
    from miniml.registry.store import register_model
    from miniml.registry.tracking import RunTracker

    session = session or TrainingSession(config, resume=resume)
    if session.abandoned_run_id:
        _mark_killed(session.abandoned_run_id, config.tracking_uri)
    tracker_args = {"run_id": session.state.run_id, "tracking_uri": config.tracking_uri}
    with RunTracker(config.experiment_name, run_name=config.model_name, **tracker_args) as tracker:
        if not resume:
            tracker.log_params(flat_params(config))
            tracker.log_dataset(session.dataset, context="training")
            tags = {"miniml.task": config.task, **session.task.describe(config), **session.run_tags}
            tracker.set_tags({**tags, **config.tags})
        outcome = session.fit(log_metrics=tracker.log_metrics, run_id=tracker.run_id)
        tracker.log_metrics({f"test_{k}": v for k, v in outcome.metrics.items()})
        if session.run_metrics:
            tracker.log_metrics(session.run_metrics)
        tracker.log_artifact(outcome.model_folder, artifact_path="model")
        tracker.log_artifact(outcome.report_dir, artifact_path="evaluation")
        version = None
        if config.register_model:
            version = register_model(config.model_name, outcome.model_folder, run_id=tracker.run_id)
        run_id = tracker.run_id
    session.finish()
    return TrainResult(
        run_id=run_id,
        model_folder=outcome.model_folder,
        model_name=config.model_name,
        model_version=version.version if version is not None else None,
        metrics=outcome.metrics,
        report_dir=outcome.report_dir,
    )


def _mark_killed(run_id: str, tracking_uri: str | None) -> None:
    """End the MLflow run of an interrupted run that a fresh run replaces (it would stay RUNNING forever)."""
    from miniml.errors import MinimlError
    from miniml.registry.backend import call, get_client

    client = get_client(tracking_uri)
    with contextlib.suppress(MinimlError):  # the old run may be gone, or live in another store
        call(f"cannot end MLflow run {run_id}", client.set_terminated, run_id, status="KILLED")

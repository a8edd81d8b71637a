"""``miniml evaluate``: score a model on a dataset split, write the report, log it to MLflow when asked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from miniml import paths
from miniml.data.dataset import Dataset, open_dataset
from miniml.evaluate.metrics import ClassificationMetrics
from miniml.evaluate.report import write_report
from miniml.inference import Predictor, load_predictor, require_finite
from miniml.modelfolder import read_info
from miniml.tasks.classification import ClassificationTask


@dataclass
class EvaluationResult:
    """Flat metrics (accuracy, macro_f1, f1/<label>, ...) and where the report files are."""

    metrics: dict[str, float]
    report_dir: Path
    details: ClassificationMetrics | None = None


def resolve_model_path(model: str | Path) -> Path:
    """A model folder, or the local folder behind a ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` URI."""
    if str(model).startswith("models:/"):
        from miniml.registry.store import resolve_model

        return Path(resolve_model(str(model)).path)
    return Path(model).expanduser()


def predict_in_batches(predictor: Predictor, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """(N, C) probabilities, computed ``batch_size`` texts at a time."""
    parts = [predictor.predict_proba(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(predictor.info.labels)), dtype=np.float32)


def score_split(predictor: Predictor, dataset: Dataset, split: str) -> ClassificationMetrics:
    """Metrics of ``predictor`` on one split (a label outside the model's label set is a DataError)."""
    from miniml.evaluate.metrics import classification_metrics

    frame = dataset.split(split)
    task = ClassificationTask(predictor.info.labels)
    y_true = task.label_ids(frame["target"].tolist())
    texts = frame["input"].astype(str).tolist()
    probs = predict_in_batches(predictor, texts)
    require_finite(probs, f"{split} split of {dataset.name}")  # argmax of NaN rows would still score
    return classification_metrics(y_true, probs.argmax(axis=-1), task.labels, texts=texts, probs=probs)


def evaluate_model(
    model: str | Path,
    dataset: str | Path,
    split: str = "test",
    *,
    out_dir: Path | None = None,
    run_id: str | None = None,
) -> EvaluationResult:
    """Evaluate a model folder or ``models:/`` URI on a dataset split; report under ``out_dir``."""
    folder = resolve_model_path(model)
    if read_info(folder).task != "classification":  # seq2seq / causal_lm: scored by generating
        from miniml.evaluate.generative import evaluate_generative_model

        report, report_dir = evaluate_generative_model(
            folder, dataset, split, out_dir=out_dir, model_ref=str(model)
        )
        if run_id is not None:
            _log_to_run(run_id, read_info(folder).name, report.metrics, report_dir, split)
        return EvaluationResult(metrics=report.metrics, report_dir=report_dir)
    predictor = load_predictor(folder)
    data = open_dataset(dataset)
    details = score_split(predictor, data, split)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out_dir = out_dir or paths.home() / "reports" / predictor.info.name / f"{data.name}-{split}-{stamp}"
    context = {
        "model": str(model),
        "model_name": predictor.info.name,
        "dataset": f"{data.name}/{data.fingerprint}",
        "split": split,
    }
    write_report(out_dir, details, context)
    metrics = details.summary()
    if run_id is not None:
        _log_to_run(run_id, predictor.info.name, metrics, out_dir, split)
    return EvaluationResult(metrics=metrics, report_dir=out_dir, details=details)


def _log_to_run(
    run_id: str, experiment: str, metrics: dict[str, float], report_dir: Path, split: str
) -> None:
    """Add the figures and report files to an existing MLflow run."""
    from miniml.registry.tracking import RunTracker

    with RunTracker(experiment, run_id=run_id) as tracker:
        tracker.log_metrics({f"{split}_{k}": v for k, v in metrics.items()})
        tracker.log_artifact(report_dir, artifact_path=f"evaluation/{split}")

"""``miniml evaluate``: score a model on a dataset split, write the report, log it to MLflow when asked.

The model's task does the scoring (its metrics, its report: ``Task.evaluate``); this step loads the model
and the data, shows progress, names the report folder and logs to MLflow.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import miniml.paths as paths
from miniml.data.dataset import open_dataset
from miniml.tasks.base import EvaluateOptions, Evaluation
from miniml.tasks.registry import get_task, load_model


@dataclass
class EvaluationResult:
    """Flat metrics (accuracy, macro_f1, f1/<label>, exact_match, ...), the report folder, the scores."""

    metrics: dict[str, float]
    report_dir: Path
    evaluation: Evaluation | None = None


@contextlib.contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (silent when it is not a terminal); yields ``advance(n)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def evaluate_model(
    model: str | Path,
    dataset: str | Path,
    split: str = "test",
    *,
    out_dir: Path | None = None,
    run_id: str | None = None,
    constrained: bool = True,
) -> EvaluationResult:
    """Evaluate a model folder or ``models:/`` URI on a dataset split; report under ``out_dir``.

    Generative models answer under their own constraint, if they have one, unless ``constrained`` is false.
    """
    loaded = load_model(model)
    task = get_task(loaded.info.task)
    data = open_dataset(dataset)
    frame = data.split(split)
    with progress("evaluate", len(frame)) as advance:
        options = EvaluateOptions(
            progress=advance, source=f"{split} split of {data.name}", constrained=constrained
        )
        evaluation = task.evaluate(loaded, frame, options)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out_dir = out_dir or paths.home() / "reports" / loaded.info.name / f"{data.name}-{split}-{stamp}"
    context = {
        "model": str(model),
        "model_name": loaded.info.name,
        "dataset": f"{data.name}/{data.fingerprint}",
        "split": split,
    }
    evaluation.write(out_dir, context)
    if run_id is not None:
        _log_to_run(run_id, loaded.info.name, evaluation.metrics, out_dir, split)
    return EvaluationResult(metrics=evaluation.metrics, report_dir=out_dir, evaluation=evaluation)


def score_of(model: str | Path, dataset: str | Path, metric: str, split: str = "test") -> float | None:
    """One metric of ``model`` on a split (None when the task does not report it): the promotion gate's
    evaluation function. Writes no report."""
    loaded = load_model(model)
    evaluation = get_task(loaded.info.task).evaluate(
        loaded, open_dataset(dataset).split(split), EvaluateOptions()
    )
    value: Any = evaluation.metrics.get(metric)
    return float(value) if isinstance(value, int | float) else None


def _log_to_run(
    run_id: str, experiment: str, metrics: dict[str, float], report_dir: Path, split: str
) -> None:
    """Add the figures and report files to an existing MLflow run."""
    from miniml.registry.tracking import RunTracker

    with RunTracker(experiment, run_id=run_id) as tracker:
        tracker.log_metrics({f"{split}_{k}": v for k, v in metrics.items()})
        tracker.log_artifact(report_dir, artifact_path=f"evaluation/{split}")

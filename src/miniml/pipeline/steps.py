"""The pipeline's steps, each a thin call into the library function its own command uses.

Every step returns a :class:`StepOutcome`: JSON-able outputs (kept in the state file, read back by later
steps and by a re-run that skips this one) and the one line the terminal shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import miniml.paths as paths
from miniml.data.dataset import SPLITS, Dataset, fingerprint_of, open_dataset
from miniml.pipeline.config import Pipeline
from miniml.pipeline.state import pipeline_dir

SHOWN_METRICS = ("macro_f1", "accuracy", "exact_match", "token_f1", "rougeL", "perplexity")


@dataclass
class StepOutcome:
    """What a step produced (kept in the state file) and its one-line summary."""

    outputs: dict[str, Any]
    line: str


def figures(metrics: dict[str, Any]) -> str:
    """``macro_f1 0.9612 · accuracy 0.9700``: the well-known metrics present, in a fixed order."""
    shown = [f"{k} {float(metrics[k]):.4f}" for k in SHOWN_METRICS if isinstance(metrics.get(k), int | float)]
    return " · ".join(shown) or "no metrics"


def dataset_ref(dataset: Dataset) -> str:
    """``NAME/FINGERPRINT`` for a dataset under MINIML_HOME, else its folder: pins exactly this version."""
    if dataset.path.resolve() == (paths.datasets_dir() / dataset.name / dataset.fingerprint).resolve():
        return f"{dataset.name}/{dataset.fingerprint}"
    return str(dataset.path)


# ---------------------------------------------------------------- data


def run_data(pipeline: Pipeline, mirror: str | None) -> StepOutcome:
    """Prepare the dataset (a no-op when one with the same fingerprint exists)."""
    from miniml.backends import get_backend
    from miniml.data.prepare import plan

    the_plan = plan(pipeline.data)
    existed = the_plan.exists
    dataset = get_backend(pipeline.config.backend or pipeline.data.backend).prepare(the_plan, mirror=mirror)
    counts = {s: dataset.manifest.counts[s] for s in SPLITS if s in dataset.manifest.counts}
    shown = " · ".join(f"{split} {n}" for split, n in counts.items())
    verb = "already prepared" if existed else "prepared"
    return StepOutcome(
        {"dataset": dataset_ref(dataset), "fingerprint": dataset.fingerprint, "counts": counts},
        f"{dataset.name}/{dataset.fingerprint} {verb}: {shown}",
    )


def open_train_dataset(pipeline: Pipeline, prepared: str | None) -> Dataset:
    """The dataset the train step uses: the one the data step just prepared, else the train config's."""
    return open_dataset(prepared or pipeline.train.dataset)


# ---------------------------------------------------------------- train


def train_config(pipeline: Pipeline, dataset: Dataset) -> Any:
    """The train config pinned to this dataset version and tagged with the pipeline's name."""
    train = pipeline.train
    tags = {**train.tags, "miniml.pipeline": pipeline.name}
    backend = pipeline.config.backend or train.backend
    return train.model_copy(update={"dataset": dataset_ref(dataset), "tags": tags, "backend": backend})


def train_key(config: Any, dataset: Dataset) -> str:
    """What the train step learns from: the config without runtime keys, and the dataset fingerprint."""
    from miniml.train.session import RUNTIME_KEYS

    dumped = config.model_dump(mode="json", exclude=RUNTIME_KEYS | {"dataset"})
    return fingerprint_of({"config": dumped, "dataset": dataset.fingerprint})


def run_train(config: Any, *, resume: bool) -> StepOutcome:
    """Train, test and register one version (``miniml train``), on the config's backend."""
    from miniml.backends import get_backend

    result = get_backend(config.backend).train(config, resume=resume)
    outputs = {
        "model": result.model_name,
        "version": result.model_version,
        "run_id": result.run_id,
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "model_folder": str(result.model_folder),
    }
    line = (
        f"{result.model_name} v{result.model_version} · test {figures(result.metrics)} · run {result.run_id}"
    )
    return StepOutcome(outputs, line)


def version_exists(name: str, version: int | None) -> bool:
    """Whether a recorded version is still in the registry (a skipped step must still have its output)."""
    from miniml.errors import MinimlError
    from miniml.registry.store import get_version

    if version is None:
        return False
    try:
        get_version(name, version)
    except MinimlError:
        return False
    return True


# ---------------------------------------------------------------- optimize


def optimize_key(pipeline: Pipeline, parent_uri: str) -> str:
    return fingerprint_of({"config": pipeline.optimize.model_dump(mode="json"), "parent": parent_uri})


def run_optimize(pipeline: Pipeline, parent_uri: str) -> StepOutcome:
    """Optimize the trained version and register the result (``miniml optimize``)."""
    from miniml.optimize.run import optimize_model

    result = optimize_model(parent_uri, pipeline.optimize)
    report = result.report
    ratios = report["ratios"]
    quality = (report["parent"]["quality"]["accuracy"], report["optimized"]["quality"]["accuracy"])
    outputs = {"version": result.version, "uri": result.uri, "folder": str(result.folder)}
    line = (
        f"{result.uri} from {parent_uri}: {ratios.get('size') or 0:.2f}x smaller, "
        f"batch-1 p50 {ratios.get('latency_p50_b1') or 0:.2f}x faster, "
        f"accuracy {quality[0]:.4f} → {quality[1]:.4f}"
    )
    return StepOutcome(outputs, line)


# ---------------------------------------------------------------- evaluate


def evaluate_key(uri: str, dataset: Dataset, split: str) -> str:
    return fingerprint_of({"uri": uri, "dataset": dataset.fingerprint, "split": split})


def run_evaluate(pipeline: Pipeline, uri: str, version: int, dataset: Dataset) -> StepOutcome:
    """Load the candidate back from the registry and score it (``miniml evaluate``)."""
    from miniml.evaluate import evaluate_model

    split = pipeline.config.evaluate.split
    out_dir = pipeline_dir(pipeline.name) / "reports" / f"v{version}-{split}"
    result = evaluate_model(uri, dataset_ref(dataset), split, out_dir=out_dir)
    metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
    report = Path(result.report_dir) / "report.md"
    return StepOutcome(
        {"uri": uri, "split": split, "metrics": metrics, "report": str(report)},
        f"{uri} on {split}: {figures(metrics)} · report {report}",
    )


# ---------------------------------------------------------------- gate


def run_gate(pipeline: Pipeline, model: str, version: int) -> StepOutcome:
    """Move the alias to the candidate if it beats the current holder (``miniml models promote``)."""
    from miniml.evaluate import score_of
    from miniml.registry import promote, views

    gate = pipeline.config.gate
    given = {"metric": gate.metric, "margin": gate.margin, "alias": gate.alias}
    settings = promote.gate_config(model, [f"{k}={v}" for k, v in given.items() if v is not None])
    result = promote.promote(
        model,
        version,
        alias=settings.alias,
        metric=settings.metric,
        margin=settings.margin,
        force=gate.force,
        evaluate=score_of,
    )
    outputs = {
        "promoted": result.promoted,
        "candidate": result.version,
        "previous": result.champion_version,
        "alias": result.alias,
        "metric": result.metric,
        "candidate_score": result.candidate_score,
        "champion_score": result.champion_score,
        "reason": result.reason,
    }
    if result.promoted and result.champion_version == result.version:
        line = f"{model} v{version} is already {result.alias}"
    elif result.promoted:
        line = views.promotion_message(result)
    else:
        line = (
            f"kept {result.alias} v{result.champion_version}: {result.metric} candidate v{result.version} "
            f"{_score(result.candidate_score)} vs {result.alias} v{result.champion_version} "
            f"{_score(result.champion_score)} (must win by more than {result.margin:g})"
        )
    return StepOutcome(outputs, line)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"

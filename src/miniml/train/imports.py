"""``miniml models import``: a checkpoint packaged as a tracked, registered model version — no training.

For tasks that can (:class:`~miniml.tasks.base.ModelImporter`, e.g. ``embedding``): the untrained encoder a
fine-tuned one must beat, or a classifier's encoder served as an embedder. With a dataset, the test split is
scored through the runtime serving uses (like after training), so ``miniml models promote`` can compare a
trained version with the imported one on the same split. Reads top to bottom like ``train()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import miniml.paths as paths
from miniml.data.dataset import fingerprint_of, open_dataset
from miniml.io import atomic_dir
from miniml.modelfolder import write_info
from miniml.registry.store import register_model
from miniml.registry.tracking import RunTracker
from miniml.registry.uris import check_name
from miniml.tasks.base import EvaluateOptions
from miniml.tasks.registry import get_task, importer, load_model
from miniml.train.run import TrainResult
from miniml.version import __version__


def import_model(
    name: str,
    task: str,
    settings: Mapping[str, Any],
    *,
    dataset: str | None = None,
    register: bool = True,
    tracking_uri: str | None = None,
) -> TrainResult:
    """Write a model folder for ``settings`` (the task's ``model:`` keys), score it, register it."""
    check_name(name)
    hook = importer(task)
    data = open_dataset(dataset) if dataset is not None else None
    work = paths.runs_dir() / name / f"import-{fingerprint_of({'task': task, 'settings': dict(settings)})}"
    with RunTracker(name, run_name=f"import-{name}", tracking_uri=tracking_uri) as tracker:
        tracker.log_params({"task": task, **{f"model.{k}": v for k, v in settings.items()}})
        tracker.set_tags({"miniml.task": task, "miniml.imported": "true"})
        common: dict[str, Any] = {
            "name": name,
            "lineage": {"run_id": tracker.run_id, "imported": dict(settings)},
            "miniml_version": __version__,
        }
        if data is not None:
            tracker.log_dataset(data, context="evaluation")
            common["dataset"] = {"name": data.name, "fingerprint": data.fingerprint, "split": "test"}
        folder = work / "model"
        with atomic_dir(folder, replace=True) as tmp:
            info = hook.import_model(settings, tmp, common)
            metrics: dict[str, float] = {}
            if data is not None:
                options = EvaluateOptions(source=f"test split of {data.name}")
                metrics = get_task(task).evaluate(load_model(tmp), data.split("test"), options).metrics
                write_info(tmp, info.model_copy(update={"metrics": metrics}))
        tracker.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        tracker.log_artifact(folder, artifact_path="model")
        version = register_model(name, folder, run_id=tracker.run_id) if register else None
        run_id = tracker.run_id
    return TrainResult(
        run_id=run_id,
        model_folder=Path(folder),
        model_name=name,
        model_version=version.version if version is not None else None,
        metrics=metrics,
    )

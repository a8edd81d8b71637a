"""Profile a loaded classifier: what training calls, and what ``miniml monitor profile`` runs.

Training writes the profile into the model folder before ``miniml.json`` (so the folder's manifest lists
it; :class:`miniml.tasks.classification.ClassificationRecipe`). For a version trained before profiles
existed, :func:`profile_version` profiles it on the dataset its ``miniml.json`` names (or another one) and
writes ``MINIML_HOME/monitor/NAME/vVERSION/reference.json``, where the server also looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miniml.data.dataset import Dataset, open_dataset
from miniml.errors import ModelError
from miniml.monitor.embedding import embedder_for
from miniml.monitor.profile import ReferenceProfile, build_profile, profile_path, write_profile

BATCH = 256


def batched_proba(predictor: Any) -> Any:
    """``predictor.predict_proba`` in batches of 256 texts."""

    def proba(texts: Sequence[str]) -> np.ndarray:
        parts = [predictor.predict_proba(list(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, len(predictor.info.labels)), dtype=np.float32)

    return proba


def profile_of(
    predictor: Any, train: Sequence[str], validation: Sequence[str], dataset: dict[str, Any]
) -> ReferenceProfile:
    """The reference profile of a classifier (a predictor with ``info`` and ``predict_proba``: callers
    check ``Task.monitored`` first)."""
    info = predictor.info
    return build_profile(
        model=info.name,
        labels=info.labels,
        train=train,
        validation=validation,
        predict_proba=batched_proba(predictor),
        embed=embedder_for(predictor),
        dataset=dataset,
    )


def dataset_of(folder: Path, info: Any, dataset: str | None) -> Dataset:
    """The dataset to profile on: ``dataset`` if given, else the one the model's ``miniml.json`` names."""
    if dataset is not None:
        return open_dataset(dataset)
    recorded = info.dataset or {}
    for ref in (recorded.get("path"), recorded.get("source")):
        if ref:
            return open_dataset(ref)
    if recorded.get("name") and recorded.get("fingerprint"):
        return open_dataset(f"{recorded['name']}/{recorded['fingerprint']}")
    raise ModelError(
        f"{folder} does not record the dataset it was trained on", hint="pass --dataset NAME/FINGERPRINT"
    )


def profile_version(
    predictor: Any, folder: Path, version: int | None, *, dataset: str | None = None, out: Path | None = None
) -> tuple[ReferenceProfile, Path]:
    """Profile a served or registered model and write it where the server looks (or to ``out``)."""
    data = dataset_of(folder, predictor.info, dataset)
    profile = profile_of(
        predictor,
        data.split("train")["input"].astype(str).tolist(),
        data.split("validation")["input"].astype(str).tolist(),
        {"name": data.name, "fingerprint": data.fingerprint},
    )
    target = out or profile_path(folder, predictor.info.name, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    return profile, write_profile(target, profile)

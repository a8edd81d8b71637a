"""Text classification: targets are label strings; outputs are probabilities over ``labels``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from miniml.errors import DataError
from miniml.models.featurizer import Featurizer
from miniml.tasks.base import register_task


class ClassificationTask:
    """Label ↔ id mapping, example building and answer decoding for one label set."""

    name = "classification"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = [str(x) for x in labels]
        self.index = {label: i for i, label in enumerate(self.labels)}

    def label_ids(self, targets: Sequence[Any]) -> np.ndarray:
        """Targets → class ids; a target outside the label set is a DataError naming it."""
        try:
            return np.array([self.index[str(t)] for t in targets], dtype=np.int64)
        except KeyError as err:
            raise DataError(
                f"target {err.args[0]!r} is not one of the model's labels {self.labels}",
                hint="train on a dataset with the same label set",
            ) from None

    def examples(self, frame: pd.DataFrame, featurizer: Featurizer) -> list[dict[str, Any]]:
        ids = self.label_ids(frame["target"].tolist())
        features = featurizer.encode(frame["input"].astype(str).tolist())
        for feature, label in zip(features, ids, strict=True):
            feature["labels"] = int(label)
        return features

    def collate(
        self, featurizer: Featurizer, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False
    ) -> dict[str, Any]:
        inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        batch = featurizer.collate(inputs, pad_to_max=pad_to_max)
        if features and "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.int64)
        return batch

    def metrics(self, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        from miniml.evaluate.metrics import classification_metrics

        return classification_metrics(y_true, scores.argmax(axis=-1), self.labels).summary()

    def decode(self, probs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        """(B, C) probabilities → ``{"label", "score", "scores"}`` per row (``scores``: top-k or all)."""
        answers = []
        k = len(self.labels) if top_k is None else max(1, min(top_k, len(self.labels)))
        order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        for row, ranked in zip(probs, order, strict=True):
            scores = {self.labels[j]: round(float(row[j]), 6) for j in ranked}
            best = int(ranked[0])
            answers.append(
                {"label": self.labels[best], "score": round(float(row[best]), 6), "scores": scores}
            )
        return answers


@register_task("classification")
def classification(labels: Sequence[str]) -> ClassificationTask:
    return ClassificationTask(labels)

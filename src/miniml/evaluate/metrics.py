"""Classification metrics (scikit-learn): accuracy, macro/weighted P/R/F1, per-class P/R/F1, confusion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


@dataclass
class ClassificationMetrics:
    """Every figure of one evaluation; ``summary()`` flattens them to ``name → float``."""

    labels: list[str]
    accuracy: float
    macro: dict[str, float]
    weighted: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]] = field(repr=False)  # rows: true label, columns: predicted label
    support: int = 0

    def summary(self) -> dict[str, float]:
        out = {"accuracy": self.accuracy}
        for avg, values in (("macro", self.macro), ("weighted", self.weighted)):
            out.update({f"{avg}_{name}": v for name, v in values.items()})
        for label, values in self.per_class.items():
            out.update({f"{name}/{label}": v for name, v in values.items() if name != "support"})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "support": self.support,
            "metrics": self.summary(),
            "per_class": self.per_class,
            "confusion_matrix": self.confusion,
        }


def _prf(y_true: np.ndarray, y_pred: np.ndarray, ids: list[int], average: str | None) -> Any:
    return precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]
) -> ClassificationMetrics:
    """Metrics over class ids ``y_true`` / ``y_pred`` (indices into ``labels``)."""
    ids = list(range(len(labels)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    averages = {}
    for avg in ("macro", "weighted"):
        p, r, f, _ = _prf(y_true, y_pred, ids, avg)
        averages[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = _prf(y_true, y_pred, ids, None)
    per_class = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": float(s[i])}
        for i, label in enumerate(labels)
    }
    return ClassificationMetrics(
        labels=list(labels),
        accuracy=float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        macro=averages["macro"],
        weighted=averages["weighted"],
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        support=len(y_true),
    )

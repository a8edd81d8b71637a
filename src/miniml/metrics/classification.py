"""Classification metrics (scikit-learn): accuracy, macro/weighted P/R/F1, per-class P/R/F1, confusion;
with the texts, accuracy by length bucket (words: 1-3, 4-8, 9-20, 21+; overall and per true label); with
the probabilities, expected calibration error (see ``calibration``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from miniml.metrics.calibration import expected_calibration_error

# (name, fewest words, most words): short inputs are where text classifiers fail first
LENGTH_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1-3", 0, 3),
    ("4-8", 4, 8),
    ("9-20", 9, 20),
    ("21+", 21, None),
)


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
    # bucket → {"accuracy", "support", "per_label": {label: {"accuracy", "support"}}}; empty without texts
    by_length: dict[str, dict[str, Any]] = field(default_factory=dict)
    ece: float | None = None  # expected calibration error; None without probabilities

    def summary(self) -> dict[str, float]:
        out = {"accuracy": self.accuracy}
        for avg, values in (("macro", self.macro), ("weighted", self.weighted)):
            out.update({f"{avg}_{name}": v for name, v in values.items()})
        for label, values in self.per_class.items():
            out.update({f"{name}/{label}": v for name, v in values.items() if name != "support"})
        for bucket, values in self.by_length.items():
            if values["support"]:  # MLflow metric names allow no "+": 21+ → 21_plus
                out[f"accuracy/words_{bucket.replace('+', '_plus')}"] = values["accuracy"]
        if self.ece is not None:
            out["ece"] = self.ece
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "support": self.support,
            "metrics": self.summary(),
            "per_class": self.per_class,
            "confusion_matrix": self.confusion,
            "by_length": self.by_length,
        }


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """Whitespace-separated words per text."""
    return np.fromiter((len(str(t).split()) for t in texts), dtype=np.int64, count=len(texts))


def accuracy_by_length(
    texts: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]
) -> dict[str, dict[str, Any]]:
    """Accuracy per length bucket (``LENGTH_BUCKETS``), overall and per true label, with supports."""
    words = word_counts(texts)
    right = np.asarray(y_true) == np.asarray(y_pred)
    out: dict[str, dict[str, Any]] = {}
    for name, low, high in LENGTH_BUCKETS:
        inside = (words >= low) & (words <= (high if high is not None else np.iinfo(np.int64).max))
        per_label = {}
        for i, label in enumerate(labels):
            rows = inside & (np.asarray(y_true) == i)
            per_label[label] = {
                "accuracy": float(right[rows].mean()) if rows.any() else 0.0,
                "support": int(rows.sum()),
            }
        out[name] = {
            "accuracy": float(right[inside].mean()) if inside.any() else 0.0,
            "support": int(inside.sum()),
            "per_label": per_label,
        }
    return out


def _prf(y_true: np.ndarray, y_pred: np.ndarray, ids: list[int], average: str | None) -> Any:
    return precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average, zero_division=0)


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: list[str],
    *,
    texts: Sequence[str] | None = None,
    probs: np.ndarray | None = None,
) -> ClassificationMetrics:
    """Metrics over class ids ``y_true`` / ``y_pred`` (indices into ``labels``).

    With ``texts`` (one per row) also accuracy by length bucket; with ``probs`` ((N, C), the scores the
    model answers with) also the expected calibration error.
    """
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
        by_length=accuracy_by_length(texts, y_true, y_pred, labels) if texts is not None else {},
        ece=expected_calibration_error(probs, y_true) if probs is not None else None,
    )

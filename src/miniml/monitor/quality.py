"""Online quality from feedback: a window of (true, predicted) pairs per served version, and the feedback log.

:class:`OnlineQuality` keeps the last ``window`` labelled answers of one version: accuracy is the exact share
of correct ones, macro-F1 comes from ``sklearn.metrics.f1_score`` over the labels seen in the window.
:class:`FeedbackLog` appends one JSON line per labelled input (``input``, ``label`` = the true label or
reference text, the prediction and version of every role that answered), so ``miniml data prepare`` can
read it as a ``format: jsonl`` source (``input: input``, ``target: label``) for retraining, and
``miniml models promote --online`` can score versions on it.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def same_answer(label: str, prediction: str) -> bool:
    """Whether a prediction matches the feedback: equal labels, or equal texts up to case, Unicode form and
    spacing (generated answers)."""
    if label == prediction:
        return True

    def norm(s: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", s).casefold().split())

    return norm(label) == norm(prediction)


@dataclass(frozen=True)
class QualitySummary:
    """One version's online figures."""

    count: int  # labelled answers ever received
    window: int  # of which in the window
    accuracy: float | None
    macro_f1: float | None


class OnlineQuality:
    """The last ``window`` labelled answers of one served version."""

    def __init__(self, window: int = 1000) -> None:
        self._pairs: deque[tuple[str, str]] = deque(maxlen=window)
        self.count = 0

    def add(self, label: str, prediction: str) -> bool:
        """Record one labelled answer; whether it was right."""
        self._pairs.append((label, prediction))
        self.count += 1
        return same_answer(label, prediction)

    def summary(self) -> QualitySummary:
        pairs = list(self._pairs)
        if not pairs:
            return QualitySummary(self.count, 0, None, None)
        correct = sum(same_answer(t, p) for t, p in pairs)
        return QualitySummary(self.count, len(pairs), correct / len(pairs), macro_f1(pairs))


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Macro-F1 over the labels that occur as truth or prediction."""
    from sklearn.metrics import f1_score

    truth = [t for t, _ in pairs]
    pred = [t if same_answer(t, p) else p for t, p in pairs]
    labels = sorted(set(truth) | set(pred))
    return float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0))


class FeedbackLog:
    """Append-only JSONL of labelled inputs (one line each; a write is one ``write`` + ``flush``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        text = "".join(json.dumps({"time": now, **row}, ensure_ascii=False) + "\n" for row in rows)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()


def read_feedback(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a feedback log (a truncated last line, from a crash mid-write, is skipped)."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def version_scores(rows: list[dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """(correct, total) per version over feedback rows, every role that answered counted."""
    scores: dict[int, tuple[int, int]] = {}
    for row in rows:
        label = row.get("label")
        for role, answer in (row.get("answers") or {}).items():
            version = answer.get("version")
            if version is None or label is None or role is None:
                continue
            right, total = scores.get(int(version), (0, 0))
            scores[int(version)] = (right + same_answer(str(label), str(answer["prediction"])), total + 1)
    return scores

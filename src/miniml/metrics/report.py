"""Evaluation report files: ``metrics.json``, ``report.md`` and plots, for classifiers and generators.

Classifiers: ``confusion_matrix.png`` and a per-class table; generators: sample predictions. After training
both get ``curves.png`` (loss and the validation metric per step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miniml.io import atomic_write_json, atomic_write_text
from miniml.metrics.classification import ClassificationMetrics
from miniml.metrics.plots import plot_confusion, plot_curves

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
CONFUSION_FILE = "confusion_matrix.png"
CURVES_FILE = "curves.png"


def markdown_report(metrics: ClassificationMetrics, context: dict[str, Any]) -> str:
    """A human-readable summary: context, headline figures, per-class table, confusion matrix."""
    lines = [f"# Evaluation: {context.get('model', '?')} on {context.get('dataset', '?')}", ""]
    lines += [f"- {key}: `{value}`" for key, value in context.items()]
    lines += ["", "| metric | value |", "|---|---|", f"| accuracy | {metrics.accuracy:.4f} |"]
    for avg, values in (("macro", metrics.macro), ("weighted", metrics.weighted)):
        lines += [f"| {avg} {name} | {v:.4f} |" for name, v in values.items()]
    if metrics.ece is not None:
        lines.append(f"| expected calibration error (15 bins) | {metrics.ece:.4f} |")
    lines += ["", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, v in metrics.per_class.items():
        lines.append(
            f"| {label} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {int(v['support'])} |"
        )
    lines += length_table(metrics)
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", ""]
    lines += ["| | " + " | ".join(metrics.labels) + " |", "|---" * (len(metrics.labels) + 1) + "|"]
    for label, row in zip(metrics.labels, metrics.confusion, strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(c) for c in row) + " |")
    lines += ["", f"![confusion matrix]({CONFUSION_FILE})", ""]
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    metrics: ClassificationMetrics,
    context: dict[str, Any],
    history: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Write every report file into ``out_dir`` and return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / METRICS_FILE, {**context, **metrics.to_json()})
    plot_confusion(metrics.confusion, metrics.labels, out_dir / CONFUSION_FILE)
    text = markdown_report(metrics, context)
    if history and plot_curves(history, out_dir / CURVES_FILE):
        text += f"\n![training curves]({CURVES_FILE})\n"
    atomic_write_text(out_dir / REPORT_FILE, text)
    return out_dir


def length_table(metrics: ClassificationMetrics) -> list[str]:
    """Accuracy by length bucket (words), overall and per true label, as markdown lines (support in ())."""
    if not metrics.by_length:
        return []
    lines = [
        "",
        "Accuracy by length (whitespace-separated words; rows per true label, support in brackets):",
        "",
    ]
    lines += [
        "| words | all | " + " | ".join(metrics.labels) + " |",
        "|---" * (len(metrics.labels) + 2) + "|",
    ]
    for bucket, values in metrics.by_length.items():
        cells = [_cell(values)] + [_cell(values["per_label"][label]) for label in metrics.labels]
        lines.append(f"| {bucket} | " + " | ".join(cells) + " |")
    return lines


def _cell(values: dict[str, Any]) -> str:
    return f"{values['accuracy']:.4f} ({values['support']})" if values["support"] else "-"


@dataclass
class GenerationReport:
    """Metrics of a generative model on one split, with sample predictions for the report."""

    task: str
    count: int
    metrics: dict[str, float]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "count": self.count, "metrics": self.metrics, "samples": self.samples}

    def to_markdown(self, context: dict[str, Any] | None = None) -> str:
        context = context or {}
        title = f"{context.get('model', self.task)} on {context.get('dataset', '?')}"
        lines = [f"# Evaluation: {title}", ""]
        lines += [f"- {key}: `{value}`" for key, value in {**context, "examples": self.count}.items()]
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in self.metrics.items()]
        lines += ["", "## Sample predictions", ""]
        for s in self.samples:
            mark = "✓" if s["exact_match"] else "✗"
            lines += [f"- {mark} **input**: {_short(s['input'])}", f"  - target: {_short(s['target'])}"]
            lines += [f"  - prediction: {_short(s['prediction'])}"]
        return "\n".join(lines) + "\n"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_generation_report(
    out_dir: Path,
    report: GenerationReport,
    context: dict[str, Any],
    history: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """``metrics.json`` (with the sample predictions), ``report.md`` and, after training, ``curves.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / METRICS_FILE, {**context, **report.to_dict()})
    text = report.to_markdown(context)
    if history and plot_curves(history, out_dir / CURVES_FILE, metric="eval_loss"):
        text += f"\n![training curves]({CURVES_FILE})\n"
    atomic_write_text(out_dir / REPORT_FILE, text)
    return out_dir

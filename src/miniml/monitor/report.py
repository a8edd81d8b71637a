"""``miniml monitor report``: a drift report of a traffic file against a model's reference profile.

Writes ``summary.json`` (per signal: statistic, value, threshold, p-value, ``passed``; and ``drift_detected``)
and ``report.html``: one reference-vs-current plot per signal (matplotlib, embedded as PNG, so the file is
self-contained) above a table of the figures.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen before pyplot loads
import numpy as np

from miniml.errors import DataError
from miniml.io import atomic_write_json, atomic_write_text
from miniml.monitor.build import batched_proba
from miniml.monitor.drift import SignalResult, compare
from miniml.monitor.embedding import embedder_for
from miniml.monitor.profile import ReferenceProfile

TITLES = {
    "chars": "input length (characters)",
    "tokens": "input length (words)",
    "oov_rate": "unknown-word rate",
    "scripts": "letters by writing system",
    "labels": "predicted labels",
    "confidence": "top-1 confidence",
    "embedding": "embeddings (domain classifier)",
}


@dataclass(frozen=True)
class DriftSummary:
    """What ``miniml monitor report`` found."""

    drift_detected: bool
    inputs: int
    signals: dict[str, SignalResult]
    out_dir: Path

    def as_json(self) -> dict[str, Any]:
        tests = {
            name: {
                "statistic": s.statistic,
                "value": s.value,
                "threshold": s.threshold,
                "p_value": s.p_value,
                "passed": not s.drift_detected,
            }
            for name, s in self.signals.items()
        }
        return {"drift_detected": self.drift_detected, "inputs": self.inputs, "tests": tests}


def read_texts(path: Path) -> list[str]:
    """The ``text`` of every JSONL line (the ``miniml predict`` input format)."""
    texts = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(
            f"no traffic file {path}", hint='write one {"text": ...} JSON object per line'
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{number} is not JSON", hint='write one {"text": ...} per line') from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(f'{path}:{number} has no "text" string', hint='write one {"text": ...} per line')
        texts.append(row["text"])
    if not texts:
        raise DataError(f"{path} has no inputs", hint='write one {"text": ...} JSON object per line')
    return texts


def drift_report(
    predictor: Any,
    profile: ReferenceProfile,
    texts: Sequence[str],
    out_dir: Path,
    thresholds: Mapping[str, float] | None = None,
) -> DriftSummary:
    """Compare ``texts`` (scored by ``predictor``) with ``profile``; write the report into ``out_dir``."""
    probs = batched_proba(predictor)(texts)
    signals = compare(
        profile, texts, probs, thresholds=thresholds, embed=embedder_for(predictor), embedding_rows=len(texts)
    )
    summary = DriftSummary(any(s.drift_detected for s in signals.values()), len(texts), signals, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "summary.json", {"model": profile.model, **summary.as_json()})
    atomic_write_text(out_dir / "report.html", render_html(profile, summary))
    return summary


def plot_signal(name: str, result: SignalResult) -> str:
    """A reference-vs-current bar chart of one signal, as a base64 PNG."""
    keys = list(dict.fromkeys([*result.reference, *result.current]))
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(keys) + 2), 3))
    ax.bar(x - 0.2, [result.reference.get(k, 0) for k in keys], 0.4, label="reference")
    ax.bar(x + 0.2, [result.current.get(k, 0) for k in keys], 0.4, label="current")
    ax.set_xticks(
        x, labels=keys, rotation=30 if len(keys) > 4 else 0, ha="right" if len(keys) > 4 else "center"
    )
    ax.set_ylabel("rows" if name == "embedding" else "share")
    verdict = "DRIFT" if result.drift_detected else "ok"
    ax.set_title(f"{TITLES.get(name, name)}: {result.statistic} {result.value:.3f} ({verdict})")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(profile: ReferenceProfile, summary: DriftSummary) -> str:
    rows, figures = [], []
    for name, s in summary.signals.items():
        p = "" if s.p_value is None else f"{s.p_value:.3g}"
        status = "drift" if s.drift_detected else "pass"
        rows.append(
            f"<tr class={status}><td>{html.escape(name)}</td><td>{s.statistic}</td><td>{s.value:.4f}</td>"
            f"<td>{s.threshold:g}</td><td>{p}</td><td>{status}</td></tr>"
        )
        figures.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{plot_signal(name, s)}">')
    verdict = "drift detected" if summary.drift_detected else "no drift"
    dataset = html.escape(f"{profile.dataset.get('name', '?')}/{profile.dataset.get('fingerprint', '?')}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>drift report: {html.escape(profile.model)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 10px;text-align:left}}
tr.drift{{background:#fdd}} tr.pass{{background:#dfd}} img{{display:block;margin:1em 0}}</style></head>
<body><h1>{html.escape(profile.model)}: {verdict}</h1>
<p>{summary.inputs} inputs against the reference profile of dataset {dataset}
(created {html.escape(profile.created_at)}).</p>
<table><tr><th>signal</th><th>statistic</th><th>value</th><th>threshold</th><th>p-value</th><th>result</th></tr>
{"".join(rows)}</table>
{"".join(figures)}
</body></html>
"""

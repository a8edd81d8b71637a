"""Compare a window of inputs and answers with a reference profile: one statistic per signal.

| signal | statistic | default threshold |
|---|---|---|
| ``chars``, ``tokens`` (input length) | PSI over the reference's quantile bins | 0.2 |
| ``oov_rate`` (unknown words) | rate shift, current - reference (chi-square p-value reported) | 0.1 |
| ``scripts`` (writing systems) | Jensen-Shannon distance | 0.1 |
| ``labels`` (predicted) | Jensen-Shannon distance | 0.1 |
| ``confidence`` (top-1 score) | PSI over the reference's quantile bins | 0.2 |
| ``embedding`` (when the profile has embeddings) | domain-classifier ROC AUC, with p < 0.01 | 0.75 |

A signal drifts when its statistic exceeds its threshold (the embedding signal also needs its p-value under
0.01); the window drifts when any signal does. The thresholds are effect sizes, not p-values: over a
1,000-input window sampling noise alone stays far below them (PSI ~0.02, JS ~0.03), so a stable stream does
not raise alarms the way a 5% test per signal and per scrape would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from miniml.monitor.profile import Binned, ReferenceProfile
from miniml.monitor.signals import TextSignals, text_signals
from miniml.monitor.stats import bin_counts, domain_classifier, js_distance, proportion_shift, psi

DEFAULT_THRESHOLDS: dict[str, float] = {
    "chars": 0.2,
    "tokens": 0.2,
    "oov_rate": 0.1,
    "scripts": 0.1,
    "labels": 0.1,
    "confidence": 0.2,
    "embedding": 0.75,
}
SIGNALS = tuple(DEFAULT_THRESHOLDS)
EMBEDDING_ALPHA = 0.01


class SignalResult(BaseModel):
    """One signal's verdict, with both sides' distributions (for reports and plots)."""

    statistic: str = Field(description="psi, js_distance, rate_shift or auc")
    value: float
    threshold: float
    p_value: float | None = None
    drift_detected: bool
    reference: dict[str, float] = Field(default_factory=dict)
    current: dict[str, float] = Field(default_factory=dict)


def thresholds_with(overrides: Mapping[str, float] | None) -> dict[str, float]:
    """The default thresholds with ``overrides`` applied; unknown signal names are a ValueError."""
    unknown = set(overrides or {}) - set(SIGNALS)
    if unknown:
        raise ValueError(f"unknown drift signal(s) {sorted(unknown)}; known: {', '.join(SIGNALS)}")
    return {**DEFAULT_THRESHOLDS, **(overrides or {})}


def _binned_result(ref: Binned, values: np.ndarray, threshold: float) -> SignalResult:
    current = bin_counts(values, ref.edges)
    value = psi(np.asarray(ref.counts), current)
    names = bin_names(ref.edges)
    ref_total = max(1, sum(ref.counts))
    cur_total = max(1, int(current.sum()))
    return SignalResult(
        statistic="psi",
        value=value,
        threshold=threshold,
        drift_detected=value > threshold,
        reference={n: c / ref_total for n, c in zip(names, ref.counts, strict=True)},
        current={n: int(c) / cur_total for n, c in zip(names, current, strict=True)},
    )


def bin_names(edges: Sequence[float]) -> list[str]:
    """Readable bin labels: ``<=3``, ``(3, 7]``, ..., ``>12``."""
    if not edges:
        return ["all"]
    fmt = [f"{e:g}" for e in edges]
    return [f"<={fmt[0]}", *(f"({a}, {b}]" for a, b in itertools.pairwise(fmt)), f">{fmt[-1]}"]


def _categorical_result(ref: Mapping[str, int], cur: Mapping[str, int], threshold: float) -> SignalResult:
    value = js_distance(ref, cur)
    ref_total = max(1, sum(ref.values()))
    cur_total = max(1, sum(cur.values()))
    return SignalResult(
        statistic="js_distance",
        value=value,
        threshold=threshold,
        drift_detected=value > threshold,
        reference={k: v / ref_total for k, v in ref.items()},
        current={k: v / cur_total for k, v in cur.items()},
    )


def _oov_result(profile: ReferenceProfile, signals: TextSignals, threshold: float) -> SignalResult:
    unknown, tokens = int(signals.unknown.sum()), int(signals.tokens.sum())
    shift, p = proportion_shift(profile.oov_unknown, profile.oov_tokens, unknown, tokens)
    return SignalResult(
        statistic="rate_shift",
        value=shift,
        threshold=threshold,
        p_value=p,
        drift_detected=shift > threshold,
        reference={"oov_rate": profile.oov_rate},
        current={"oov_rate": unknown / tokens if tokens else 0.0},
    )


def _embedding_result(reference: np.ndarray, current: np.ndarray, threshold: float) -> SignalResult:
    auc, p = domain_classifier(reference, current)
    return SignalResult(
        statistic="auc",
        value=auc,
        threshold=threshold,
        p_value=p,
        drift_detected=auc > threshold and p < EMBEDDING_ALPHA,
        reference={"rows": float(len(reference))},
        current={"rows": float(len(current))},
    )


def compare(
    profile: ReferenceProfile,
    texts: Sequence[str],
    probs: np.ndarray,
    *,
    thresholds: Mapping[str, float] | None = None,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    embedding_rows: int = 200,
) -> dict[str, SignalResult]:
    """Every signal of ``texts`` and their (N, C) ``probs`` against ``profile``.

    ``embed`` (texts → (N, D)) adds the embedding signal when the profile has embeddings; it is given the
    last ``embedding_rows`` texts only (embedding costs a forward pass each).
    """
    limits = thresholds_with(thresholds)
    signals = text_signals(texts, profile.vocab())
    probs = np.asarray(probs, dtype=np.float32).reshape(len(texts), -1)
    top = probs.argmax(axis=1) if len(texts) else np.zeros(0, dtype=np.int64)
    labels = profile.labels
    predicted = np.bincount(top, minlength=len(labels))
    results = {
        "chars": _binned_result(profile.chars, signals.chars, limits["chars"]),
        "tokens": _binned_result(profile.tokens, signals.tokens, limits["tokens"]),
        "oov_rate": _oov_result(profile, signals, limits["oov_rate"]),
        "scripts": _categorical_result(profile.scripts, signals.scripts, limits["scripts"]),
        "labels": _categorical_result(
            profile.predicted_labels,
            {label: int(n) for label, n in zip(labels, predicted, strict=False)},
            limits["labels"],
        ),
        "confidence": _binned_result(
            profile.confidence,
            probs.max(axis=1) if len(texts) else np.zeros(0),
            limits["confidence"],
        ),
    }
    if embed is not None:
        found = embedding_signal(profile, texts, embed, limits["embedding"], embedding_rows)
        if found is not None:
            results["embedding"] = found
    return results


def embedding_signal(
    profile: ReferenceProfile,
    texts: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray],
    threshold: float = DEFAULT_THRESHOLDS["embedding"],
    rows: int = 200,
) -> SignalResult | None:
    """The embedding signal of the last ``rows`` texts (None when the profile has no embeddings)."""
    if profile.embeddings is None or not len(texts):
        return None
    current = np.asarray(embed(list(texts[-rows:])), dtype=np.float32)
    return _embedding_result(profile.embeddings.array(), current, threshold)

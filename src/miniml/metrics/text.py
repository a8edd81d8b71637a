"""Text metrics of generated answers against references: exact match, token F1, ROUGE.

- ``exact_match``: normalised exact match. Normalising lower-cases, applies Unicode NFKC and splits into
  words and single punctuation marks, so ``SELECT a FROM 1-2`` and ``select a from 1 - 2`` match: a
  word-piece tokenizer's spacing around punctuation is not an error in SQL or in a short answer.
- ``token_f1``: bag-of-tokens F1 over the same tokens (SQuAD-style), best over the references.
- ``rouge1/rouge2/rougeL``: F-measure from Google's ``rouge-score`` (with stemming), best over references.

A row's references are its ``target`` plus any extra reference columns (``references_of``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from miniml.errors import ConfigError, DataError, MinimlError

if TYPE_CHECKING:
    import pandas as pd

TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# Metrics computed from generated text (one function each); perplexity needs the model instead.
TEXT_METRICS = ("exact_match", "token_f1", *ROUGE_TYPES)
# Extra reference columns a dataset may carry (dialogsum's test split has several summaries per dialogue).
REFERENCE_COLUMN = re.compile(r"^(references?|target_?\d+|reference_?\d+|summary_?\d+)$")


def normalize_tokens(text: str) -> list[str]:
    """Lower-cased NFKC words and punctuation marks of ``text``."""
    return TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def normalize(text: str) -> str:
    return " ".join(normalize_tokens(text))


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Share of predictions equal, after normalising, to one of their references."""
    _check_lengths(predictions, references)
    hits = [
        normalize(p) in {normalize(r) for r in refs} for p, refs in zip(predictions, references, strict=True)
    ]
    return sum(hits) / len(hits) if hits else 0.0


def _f1(prediction: list[str], reference: list[str]) -> float:
    if not prediction or not reference:
        return float(prediction == reference)
    common = sum((Counter(prediction) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over examples of the best bag-of-tokens F1 against any reference."""
    _check_lengths(predictions, references)
    scores = [
        max(_f1(normalize_tokens(p), normalize_tokens(r)) for r in refs)
        for p, refs in zip(predictions, references, strict=True)
    ]
    return sum(scores) / len(scores) if scores else 0.0


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (best reference per example), via ``rouge-score``."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise MinimlError(
            "ROUGE needs the rouge-score package", hint="pip install 'miniml[generative]'"
        ) from None

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, refs in zip(predictions, references, strict=True):
        scores = scorer.score_multi(list(refs), prediction)
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    count = max(len(predictions), 1)
    return {kind: total / count for kind, total in totals.items()}


def text_metrics(
    names: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """The named text metrics (see ``TEXT_METRICS``) of predictions against references."""
    unknown = [n for n in names if n not in TEXT_METRICS]
    if unknown:
        raise ConfigError(f"unknown text metric(s) {unknown}", hint=f"use some of {', '.join(TEXT_METRICS)}")
    out: dict[str, float] = {}
    if "exact_match" in names:
        out["exact_match"] = exact_match(predictions, references)
    if "token_f1" in names:
        out["token_f1"] = token_f1(predictions, references)
    if any(n in ROUGE_TYPES for n in names):
        out.update({k: v for k, v in rouge(predictions, references).items() if k in names})
    return out


def _check_lengths(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise DataError(f"{len(predictions)} predictions but {len(references)} references")


def references_of(frame: pd.DataFrame) -> list[list[str]]:
    """Each row's references: ``target`` plus any extra reference columns (non-empty strings)."""
    if "target" not in frame:
        raise DataError("the split has no `target` column to compare generated text with")
    extra = [c for c in frame.columns if c != "target" and REFERENCE_COLUMN.match(str(c))]
    refs = []
    for row in frame[["target", *extra]].itertuples(index=False):
        texts: list[str] = []
        for value in row:
            values = list(value) if isinstance(value, list | tuple) or hasattr(value, "tolist") else [value]
            texts.extend(str(v) for v in values if isinstance(v, str) and v.strip())
        refs.append(list(dict.fromkeys(texts)) or [""])
    return refs

"""Metrics and evaluation for generative models: exact match, token F1, ROUGE, perplexity.

- ``exact_match``: normalised exact match. Normalising lower-cases, applies Unicode NFKC and splits into
  words and single punctuation marks, so ``SELECT a FROM 1-2`` and ``select a from 1 - 2`` match: a
  word-piece tokenizer's spacing around punctuation is not an error in SQL or in a short answer.
- ``token_f1``: bag-of-tokens F1 over the same tokens (SQuAD-style), best over the references.
- ``rouge1/rouge2/rougeL``: F-measure from Google's ``rouge-score`` (with stemming), best over references.
- ``perplexity``: exp of the mean negative log-likelihood of the target tokens given the input (the tokens
  the training loss covers).

For causal LMs ``exact_match`` and ``token_f1`` compare the generated completion with the target.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniml.errors import ConfigError, DataError, MinimlError

if TYPE_CHECKING:
    import pandas as pd

    from miniml.generation import GenerationParams, Generator

TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# Metrics computed from generated text (one function each); perplexity needs the model instead.
TEXT_METRICS = ("exact_match", "token_f1", *ROUGE_TYPES)
TASK_METRICS = {
    "seq2seq": ("exact_match", "token_f1", *ROUGE_TYPES),
    "causal_lm": ("exact_match", "token_f1", "perplexity"),
}
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


def perplexity(
    generator: Generator, inputs: Sequence[str], targets: Sequence[str], batch_size: int = 16
) -> float:
    """exp(mean NLL per target token) of ``targets`` given ``inputs``, batched."""
    import torch

    from miniml.tasks.generative import data_collator, encode_examples

    collate = data_collator(generator.tokenizer)
    encoder_decoder = bool(getattr(generator.model.config, "is_encoder_decoder", False))
    total, count = 0.0, 0
    for start in range(0, len(inputs), batch_size):
        features = encode_examples(
            generator.format,
            generator.tokenizer,
            inputs[start : start + batch_size],
            targets[start : start + batch_size],
        )
        batch = {k: v.to(generator.device) for k, v in collate(features).items()}
        labels = batch.pop("labels")
        with torch.inference_mode():
            logits = generator.model(**batch, labels=labels).logits.float()  # (B, T, V)
        if not encoder_decoder:  # a causal LM predicts token t+1 at position t
            logits, labels = logits[:, :-1], labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum"
        )
        total += float(nll)
        count += int((labels != -100).sum())
    return math.exp(total / count) if count else float("nan")


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


def generate_all(
    generator: Generator,
    prompts: Sequence[str],
    params: GenerationParams | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Answers for every prompt, in order; prompts are batched by length to waste little padding."""
    encoded = [generator.encode_prompt(p, truncate=True) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    params = params or generator.default_params
    answers: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        results = generator.run([encoded[i] for i in chunk], [params] * len(chunk))
        for i, result in zip(chunk, results, strict=True):
            answers[i] = result.text
        if on_batch is not None:
            on_batch(len(chunk))
    return answers


@dataclass
class GenerativeReport:
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


def evaluate_generative(
    generator: Generator,
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    params: GenerationParams | None = None,
    batch_size: int = 16,
    samples: int = 10,
    on_batch: Callable[[int], None] | None = None,
) -> GenerativeReport:
    """Generate for every row of ``frame`` (columns ``input``, ``target``) and score the answers."""
    names = list(metrics or TASK_METRICS[generator.task])
    inputs = [str(x) for x in frame["input"]]
    references = references_of(frame)
    predictions = generate_all(generator, inputs, params, batch_size, on_batch)
    scores = text_metrics([n for n in names if n != "perplexity"], predictions, references)
    if "perplexity" in names:
        targets = [str(t) for t in frame["target"]]
        scores["perplexity"] = perplexity(generator, inputs, targets, batch_size)
    shown = [
        {
            "input": inputs[i],
            "target": references[i][0],
            "prediction": predictions[i],
            "exact_match": normalize(predictions[i]) in {normalize(r) for r in references[i]},
        }
        for i in range(min(samples, len(inputs)))
    ]
    return GenerativeReport(generator.task, len(inputs), scores, shown)


def write_generative_report(
    out_dir: Path,
    report: GenerativeReport,
    context: dict[str, Any],
    history: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """``metrics.json`` (with the sample predictions), ``report.md`` and, after training, ``curves.png``."""
    from miniml.evaluate.plots import plot_curves
    from miniml.evaluate.report import CURVES_FILE, METRICS_FILE, REPORT_FILE
    from miniml.io import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / METRICS_FILE, {**context, **report.to_dict()})
    text = report.to_markdown(context)
    if history and plot_curves(history, out_dir / CURVES_FILE, metric="eval_loss"):
        text += f"\n![training curves]({CURVES_FILE})\n"
    atomic_write_text(out_dir / REPORT_FILE, text)
    return out_dir


@contextlib.contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (silent when it is not a terminal); yields ``advance(n)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def evaluate_generative_model(
    folder: Path,
    dataset: str | Path,
    split: str = "test",
    *,
    out_dir: Path | None = None,
    model_ref: str = "",
) -> tuple[GenerativeReport, Path]:
    """``miniml evaluate`` for a seq2seq / causal_lm model folder: metrics + report files."""
    from datetime import UTC, datetime

    from miniml import paths
    from miniml.data.dataset import open_dataset
    from miniml.generation import Generator

    generator = Generator.load(folder)
    data = open_dataset(dataset)
    frame = data.split(split)
    with progress("generate", len(frame)) as advance:
        report = evaluate_generative(generator, frame, on_batch=advance)
    name = generator.info.name if generator.info else Path(folder).name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out_dir = out_dir or paths.home() / "reports" / name / f"{data.name}-{split}-{stamp}"
    context = {
        "model": model_ref or str(folder),
        "model_name": name,
        "dataset": f"{data.name}/{data.fingerprint}",
    }
    write_generative_report(out_dir, report, {**context, "split": split})
    return report, out_dir


def predict_generative_file(
    folder: Path, input_path: Path, output_path: Path, *, batch_size: int = 16
) -> int:
    """``miniml predict`` for generative models: ``{"generated_text"}`` (+ ``id``) per input line, in order.

    Reads and validates lines like classification prediction does; prompts over the model's cap are cut
    the way training cut them. The output file is replaced atomically.
    """
    from miniml.evaluate.predict import stream_jsonl
    from miniml.generation import Generator

    if not input_path.is_file():
        raise DataError(f"input file {input_path} does not exist", hint="pass a JSONL file with a text field")
    generator = Generator.load(folder)

    def answer(texts: list[str]) -> list[dict[str, Any]]:
        return [{"generated_text": t} for t in generate_all(generator, texts, batch_size=batch_size)]

    return stream_jsonl(input_path, output_path, batch_size, answer)

"""Scoring generative models: answers for a split, text metrics against references, perplexity, report.

``exact_match``, ``token_f1`` and ROUGE come from :mod:`miniml.metrics.text`; ``perplexity`` is exp of the
mean negative log-likelihood of the target tokens given the input (the tokens the training loss covers).
For causal LMs ``exact_match`` and ``token_f1`` compare the generated completion with the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniml.metrics.report import GenerationReport, write_generation_report
from miniml.metrics.text import normalize, references_of, text_metrics
from miniml.runtime.generation import GenerationParams, Generator
from miniml.tasks.base import EvaluateOptions

if TYPE_CHECKING:
    import pandas as pd


def perplexity(
    generator: Generator, inputs: Sequence[str], targets: Sequence[str], batch_size: int = 16
) -> float:
    """exp(mean NLL per target token) of ``targets`` given ``inputs``, batched."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    collate = DataCollatorForSeq2Seq(
        generator.tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8
    )
    fmt: Any = generator.format
    encoder_decoder = bool(getattr(generator.model.config, "is_encoder_decoder", False))
    total, count = 0.0, 0
    for start in range(0, len(inputs), batch_size):
        pairs = zip(inputs[start : start + batch_size], targets[start : start + batch_size], strict=True)
        features = [fmt.encode_example(generator.tokenizer, str(x), str(y)) for x, y in pairs]
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


def generate_all(
    generator: Generator,
    prompts: Sequence[str],
    params: GenerationParams | None = None,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
    *,
    constrained: bool = True,
) -> list[str]:
    """Answers for every prompt, in order; prompts are batched by length to waste little padding.

    The model's own constraint (if it has one) applies unless ``constrained`` is false.
    """
    encoded = [generator.encode_prompt(p, truncate=True) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    params = params or generator.default_params
    answers: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        guided = [generator.constraint_for(prompts[i], use_model=constrained) for i in chunk]
        results = generator.run([encoded[i] for i in chunk], [params] * len(chunk), constraints=guided)
        for i, result in zip(chunk, results, strict=True):
            answers[i] = result.text
        if on_batch is not None:
            on_batch(len(chunk))
    return answers


@dataclass
class GenerationEvaluation:
    """A generative model's scores on a split, with sample predictions for the report."""

    report: GenerationReport

    @property
    def metrics(self) -> dict[str, float]:
        return self.report.metrics

    def write(
        self, out_dir: Path, context: Mapping[str, Any], history: Sequence[dict[str, Any]] | None = None
    ) -> Path:
        return write_generation_report(out_dir, self.report, dict(context), history)


def evaluate_generation(
    generator: Generator,
    frame: pd.DataFrame,
    metrics: Sequence[str],
    task: str,
    options: EvaluateOptions,
    params: GenerationParams | None = None,
) -> GenerationEvaluation:
    """Generate for every row of ``frame`` (columns ``input``, ``target``) and score the answers (under the
    model's own constraint, if it has one, unless ``options.constrained`` is false)."""
    if options.limit:
        frame = frame.head(options.limit)
    inputs = [str(x) for x in frame["input"]]
    references = references_of(frame)
    predictions = generate_all(
        generator, inputs, params, options.batch_size, options.progress, constrained=options.constrained
    )
    scores = text_metrics([n for n in metrics if n != "perplexity"], predictions, references)
    if "perplexity" in metrics:
        targets = [str(t) for t in frame["target"]]
        scores["perplexity"] = perplexity(generator, inputs, targets, options.batch_size)
    shown = [
        {
            "input": inputs[i],
            "target": references[i][0],
            "prediction": predictions[i],
            "exact_match": normalize(predictions[i]) in {normalize(r) for r in references[i]},
        }
        for i in range(min(options.samples, len(inputs)))
    ]
    return GenerationEvaluation(GenerationReport(task, len(inputs), scores, shown))

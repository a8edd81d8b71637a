"""Scoring generative models: perplexity against the training loss, and the evaluation report."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import tiny_generative as tg
from miniml.metrics.text import exact_match
from miniml.tasks import get_task, load_generator, load_model
from miniml.tasks.base import EvaluateOptions
from miniml.tasks.generative import data_collator, encode_examples
from miniml.tasks.generative_scoring import generate_all, perplexity
from tiny_generative import one_torch_thread  # noqa: F401


@pytest.mark.usefixtures("one_torch_thread")
def test_perplexity_is_exp_of_the_mean_target_token_loss() -> None:
    generator = load_generator(tg.trained_folder("gpt2"))
    inputs, targets = [p[0] for p in tg.PAIRS[:3]], [p[1] for p in tg.PAIRS[:3]]
    batch = data_collator(generator.tokenizer)(
        encode_examples(generator.format, generator.tokenizer, inputs, targets)
    )
    with torch.inference_mode():
        loss = generator.model(**batch).loss  # transformers' mean over target tokens
    assert perplexity(generator, inputs, targets, batch_size=2) == pytest.approx(
        math.exp(float(loss)), rel=1e-4
    )


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_evaluation_report_has_task_metrics_and_samples(kind: str) -> None:
    model = load_model(tg.trained_folder(kind))
    generator = model.predictor
    frame = pd.DataFrame({"input": [p[0] for p in tg.PAIRS[:6]], "target": [p[1] for p in tg.PAIRS[:6]]})
    evaluation = get_task(model.info.task).evaluate(model, frame, EvaluateOptions(batch_size=4, samples=3))
    report = evaluation.report  # type: ignore[attr-defined]
    expected = {
        "exact_match",
        "token_f1",
        *(("rouge1", "rouge2", "rougeL") if kind == "t5" else ("perplexity",)),
    }
    assert set(report.metrics) == expected
    assert report.count == 6 and len(report.samples) == 3
    predictions = generate_all(generator, list(frame["input"]), batch_size=4)
    assert report.metrics["exact_match"] == exact_match(predictions, [[t] for t in frame["target"]])
    assert report.metrics["exact_match"] > 0
    assert "## Sample predictions" in report.to_markdown() and report.to_dict()["count"] == 6

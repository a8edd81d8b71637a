"""Train tiny models end to end through the shared engine (no tracking server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from miniml.data.dataset import Dataset
from miniml.errors import ConfigError
from miniml.metrics.calibration import with_temperature
from miniml.modelfolder import read_info, write_info
from miniml.runtime.predictor import predict_in_batches
from miniml.tasks import load_predictor
from miniml.tasks.classification import ClassificationConfig
from miniml.train import fit


def config(dataset: Dataset, model: dict, **kw) -> ClassificationConfig:
    base = {
        "model_name": "toy",
        "dataset": str(dataset.path),
        "model": model,
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 0.05,
        "eval_steps": 15,
        "logging_steps": 5,
        "early_stopping_patience": None,
        "threads": 1,
    }
    return ClassificationConfig(**{**base, **kw})


def losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history if "loss" in h]


def check_folder(folder: Path, dataset: Dataset, metrics: dict[str, float]) -> None:
    info = read_info(folder)
    assert info.labels == ["da", "nn", "sv"]
    assert info.dataset["fingerprint"] == dataset.fingerprint
    assert info.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert (folder / "model.safetensors").is_file()
    frame = dataset.split("test")
    probs = predict_in_batches(load_predictor(folder), frame["input"].tolist(), batch_size=7)
    assert probs.dtype == np.float32 and probs.shape == (len(frame), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(np.array(info.labels)[probs.argmax(1)] == frame["target"].to_numpy()))
    assert accuracy == pytest.approx(metrics["accuracy"])


def test_hashing_bag_learns_and_writes_folder(toy_dataset: Dataset) -> None:
    outcome = fit(config(toy_dataset, {"kind": "hashing_bag", "buckets": 4096, "dim": 16}))
    seen = losses(outcome.history)
    assert seen[-1] < seen[0] * 0.5
    assert outcome.metrics["accuracy"] > 0.9
    check_folder(outcome.model_folder, toy_dataset, outcome.metrics)
    report = json.loads((outcome.report_dir / "metrics.json").read_text())
    assert report["metrics"]["macro_f1"] == pytest.approx(outcome.metrics["macro_f1"])
    assert {"report.md", "confusion_matrix.png", "curves.png"} <= {
        p.name for p in outcome.report_dir.iterdir()
    }
    assert "ece" in report["metrics"] and report["by_length"]["1-3"]["support"] >= 0
    assert "Accuracy by length" in (outcome.report_dir / "report.md").read_text()


def test_temperature_is_fitted_on_validation_and_applied(toy_dataset: Dataset) -> None:
    outcome = fit(config(toy_dataset, {"kind": "hashing_bag", "buckets": 4096, "dim": 16}, epochs=1))
    info = read_info(outcome.model_folder)
    scaling = info.lineage["temperature_scaling"]
    assert scaling["split"] == "validation" and scaling["temperature"] > 0
    assert info.logit_temperature == (scaling["temperature"] if scaling["kept"] else 1.0)
    assert scaling["kept"] == (scaling["ece_after"] < scaling["ece_before"])
    # the predictor applies it: the same folder without the temperature gives the unscaled scores
    texts = toy_dataset.split("test")["input"].tolist()
    scaled = load_predictor(outcome.model_folder).predict_proba(texts)
    write_info(outcome.model_folder, info.model_copy(update={"logit_temperature": 1.0}))
    raw = load_predictor(outcome.model_folder).predict_proba(texts)
    np.testing.assert_allclose(scaled, with_temperature(raw, info.logit_temperature), rtol=1e-4, atol=1e-6)

    model = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}
    off = fit(config(toy_dataset, model, temperature_scaling=False, label_weights={"sv": 3.0, "da": 1.0}))
    off_info = read_info(off.model_folder)
    assert off_info.logit_temperature == 1.0 and "temperature_scaling" not in off_info.lineage
    # label_weights are recorded and applied by the predictor: sv's probability x3, renormalised
    assert off_info.label_weights == {"sv": 3.0}
    shifted = load_predictor(off.model_folder).predict_proba(texts)
    write_info(off.model_folder, off_info.model_copy(update={"label_weights": {}}))
    plain = load_predictor(off.model_folder).predict_proba(texts) * np.array([1.0, 1.0, 3.0])
    np.testing.assert_allclose(shifted, plain / plain.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="label_weights names \\['xx'\\]"):
        fit(config(toy_dataset, model, label_weights={"xx": 2.0}))


def test_ordinal_soft_targets_are_the_training_loss(toy_dataset: Dataset) -> None:
    outcome = fit(config(toy_dataset, {"kind": "hashing_bag", "buckets": 4096, "dim": 16}, ordinal_alpha=0.5))
    seen = losses(outcome.history)
    # soft targets over da < nn < sv have entropy >= 0.885 nats: the loss cannot fall below it, but the
    # argmax is still the true label, so the model still learns
    assert min(seen) > 0.85 and seen[-1] < seen[0]
    assert outcome.metrics["accuracy"] > 0.9


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "char_cnn", "embedding_dim": 16, "filters": 16, "widths": [2, 3], "dropout": 0.0},
        {"kind": "bilstm", "unit": "word", "embedding_dim": 16, "hidden": 16, "min_count": 1},
    ],
    ids=["char_cnn", "bilstm"],
)
def test_vocab_models_learn(toy_dataset: Dataset, model: dict) -> None:
    outcome = fit(config(toy_dataset, model, learning_rate=0.01, epochs=4))
    seen = losses(outcome.history)
    assert seen[-1] < seen[0] * 0.7
    assert outcome.metrics["accuracy"] > 0.8
    check_folder(outcome.model_folder, toy_dataset, outcome.metrics)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pretrained_style_model(toy_dataset: Dataset, tiny_bert: Path, pooling: str) -> None:
    model = {"kind": "pretrained", "name_or_path": str(tiny_bert), "pooling": pooling, "max_length": 32}
    outcome = fit(config(toy_dataset, model, learning_rate=3e-3, epochs=4, warmup_ratio=0.1))
    seen = losses(outcome.history)
    assert seen[-1] < seen[0] * 0.7
    check_folder(outcome.model_folder, toy_dataset, outcome.metrics)
    info = read_info(outcome.model_folder)
    assert info.architecture == ("hf" if pooling == "cls" else "hf_mean_pool")
    assert info.base_model == str(tiny_bert)
    check_plain_transformers(outcome.model_folder, toy_dataset, pooling)


def check_plain_transformers(folder: Path, dataset: Dataset, pooling: str) -> None:
    """cls: plain transformers gives miniml's probabilities (a kept temperature is folded into the head);
    mean: every Auto loader refuses, naming why, instead of building a fresh head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if pooling == "mean":
        with pytest.raises(ValueError, match="mean pooling"):
            AutoModelForSequenceClassification.from_pretrained(folder)
        return
    info = read_info(folder)
    assert info.logit_temperature == 1.0
    texts = dataset.split("test")["input"].tolist()[:16]
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert hf.config.id2label == {0: "da", 1: "nn", 2: "sv"}
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(hf(**batch).logits, dim=-1).numpy()
    np.testing.assert_allclose(probs, load_predictor(folder).predict_proba(texts), atol=1e-5)


def test_same_seed_same_weights(toy_dataset: Dataset) -> None:
    cfg = config(toy_dataset, {"kind": "hashing_bag", "buckets": 2048, "dim": 8}, max_steps=8, eval_steps=4)
    first = (fit(cfg).model_folder / "model.safetensors").read_bytes()
    second = (fit(cfg).model_folder / "model.safetensors").read_bytes()
    assert first == second

"""Pretrained-encoder folders and plain transformers: an ``hf`` folder loads with exactly miniml's
probabilities (a fitted temperature folded into the head); a mean-pooling folder, an int8-at-load folder
and an unfolded temperature make every transformers Auto loader refuse with the reason. Tiny BERTs built
locally (tests/unit/optimize/optimize_support.py)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

from miniml.modelfolder import read_info, write_info
from miniml.models.folder import architecture_of, save_model_folder
from miniml.models.hf_folder import (
    HF_CONFIG,
    INT8_REASON,
    LABEL_WEIGHTS_REASON,
    MEAN_POOL_REASON,
    TEMPERATURE_REASON,
    fold_temperature,
)
from miniml.models.pretrained import PretrainedSpec
from miniml.models.registry import get_builder
from miniml.tasks import load_predictor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "optimize"))
from optimize_support import (
    LABELS,
    fit_briefly,
    info_for,
    make_dataset,
    make_tiny_bert,
    make_tiny_bert_source,
    texts_for,
)

TEXTS = ["the plot was awful and boring", "a superb and moving film", *texts_for("neu", 4, 3)]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert_source(tmp_path_factory.mktemp("bert_source"))


def transformers_probs(folder: Path, texts: list[str]) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits
    return torch.softmax(logits, dim=-1).numpy()


def test_hf_folder_loads_exactly_and_a_folded_temperature_keeps_miniml_probabilities(
    tmp_path: Path, source: Path
) -> None:
    folder = make_tiny_bert(tmp_path / "bert", make_dataset(), source, fit=True)
    assert not (folder / HF_CONFIG).exists()
    plain = load_predictor(folder).predict_proba(TEXTS)
    np.testing.assert_allclose(transformers_probs(folder, TEXTS), plain, atol=1e-5)

    # what training does when it keeps a temperature: fold it into the head, keep logit_temperature 1
    info = read_info(folder)
    write_info(folder, info.model_copy(update={"logit_temperature": 2.5}))
    calibrated = load_predictor(folder).predict_proba(TEXTS)  # miniml divides the logits by 2.5
    assert np.abs(calibrated - plain).max() > 0.01
    assert fold_temperature(folder, 2.5)
    write_info(folder, info)
    folded = load_predictor(folder).predict_proba(TEXTS)
    np.testing.assert_allclose(folded, calibrated, atol=1e-5)
    np.testing.assert_allclose(transformers_probs(folder, TEXTS), folded, atol=1e-5)


@pytest.fixture(scope="module")
def mean_folder(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    return mean_pool_folder(tmp_path_factory.mktemp("mean") / "model", source)


def mean_pool_folder(folder: Path, source: Path) -> Path:
    spec = PretrainedSpec(name_or_path=str(source), pooling="mean", max_length=32)
    featurizer = spec.make_featurizer([])
    torch.manual_seed(0)
    module = get_builder("pretrained")(spec, list(LABELS), featurizer)
    dataset = make_dataset()
    fit_briefly(module, featurizer, dataset, steps=10, lr=3e-3)
    save_model_folder(
        folder, module, featurizer, spec, info_for("meanpool", architecture_of(spec), dataset, featurizer)
    )
    return folder


def test_mean_pool_folder_is_refused_by_every_transformers_loader(mean_folder: Path) -> None:
    folder = mean_folder
    stub = json.loads((folder / "config.json").read_text())
    assert MEAN_POOL_REASON in stub["model_type"] and stub["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    for load in (AutoModelForSequenceClassification.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(ValueError, match="mean pooling"):
            load(str(folder))
    with pytest.raises(ValueError, match="load it with miniml"):
        pipeline("text-classification", model=str(folder))
    # miniml itself loads it, from hf_config.json, with no warning about the stub
    probs = load_predictor(folder).predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert json.loads((folder / HF_CONFIG).read_text())["model_type"] == "bert"


def test_mean_pool_folder_written_before_the_stub_still_loads(tmp_path: Path, mean_folder: Path) -> None:
    folder = Path(shutil.copytree(mean_folder, tmp_path / "mean"))
    before = load_predictor(folder).predict_proba(TEXTS)
    (folder / HF_CONFIG).replace(folder / "config.json")  # the old layout: the encoder config as config.json
    write_info(folder, read_info(folder))  # a consistent folder of that layout (manifest rewritten)
    np.testing.assert_allclose(load_predictor(folder).predict_proba(TEXTS), before, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"quantization": {"method": "torch_dynamic"}}, INT8_REASON),
        ({"logit_temperature": 1.7}, TEMPERATURE_REASON),
        ({"label_weights": {LABELS[0]: 2.0}}, LABEL_WEIGHTS_REASON),
    ],
)
def test_hf_folder_that_transformers_cannot_reproduce_is_refused(
    tmp_path: Path, source: Path, change: dict, reason: str
) -> None:
    spec = PretrainedSpec(name_or_path=str(source), pooling="cls", max_length=32)
    featurizer = spec.make_featurizer([])
    module = get_builder("pretrained")(spec, list(LABELS), featurizer)
    info = info_for("bert", "hf", make_dataset(), featurizer).model_copy(update=change)
    folder = tmp_path / "bert"
    save_model_folder(folder, module, featurizer, spec, info)
    with pytest.raises(ValueError, match=reason.split(";")[0][:40]):
        AutoModelForSequenceClassification.from_pretrained(str(folder))
    assert load_predictor(folder).predict_proba(TEXTS).shape == (len(TEXTS), 3)


def test_loading_a_refusing_folder_logs_no_transformers_warning(
    mean_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        load_predictor(mean_folder)
    assert not [r for r in caplog.records if "model of type" in r.getMessage()]

"""The model card renderer: Hugging Face front matter (read back by huggingface_hub) and the facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from miniml.modelcard import (
    CARD_FILE,
    GENERIC,
    card_license,
    card_text,
    hub_base_model,
    license_id,
    render_card,
)
from miniml.modelfolder import ModelInfo, write_info
from miniml.tasks import get_task  # the task table registers what each task's cards say
from miniml.tasks.classification_card import loads_in_transformers

LABELS = ["da", "nb", "other"]
DATASET = {
    "name": "langs",
    "fingerprint": "fp123",
    "split": "test",
    "rows": {"test": 30, "train": 300, "validation": 30},
    "label_counts": {
        "test": {"da": 10, "nb": 10, "other": 10},
        "train": {"da": 100, "nb": 100, "other": 100},
    },
    "sources": [
        {
            "uri": "https://example.org/ud/da_ddt-ud-test.conllu",
            "license": "CC BY-SA 4.0 (see LICENSE)",
            "rows": 150,
        },
        {"uri": "https://example.org/wiki/test.csv", "license": "CC BY-SA 3.0 (Wikipedia text)", "rows": 150},
    ],
    "composition": {
        "lang": {"da": {"da": 90, "dk": 10}, "nb": {"nb": 100}, "other": {"is": 50, "fo": 30, "en": 20}},
    },
}
METRICS = {
    "accuracy": 0.91,
    "macro_f1": 0.9,
    "ece": 0.02,
    **{
        f"{m}/{label}": v
        for label, v in zip(LABELS, (0.95, 0.81, 0.93), strict=True)
        for m in ("precision", "recall", "f1")
    },
    "accuracy/words_1-3": 0.7,
}


def classifier(**changes: object) -> ModelInfo:
    info = ModelInfo(
        name="langid",
        task="classification",
        architecture="hashing_bag",
        labels=LABELS,
        preprocessing={"kind": "hashing", "buckets": 4096},
        dataset=DATASET,
        metrics=METRICS,
        lineage={"run_id": "r1", "temperature_scaling": {"temperature": 1.4, "kept": True}},
        logit_temperature=1.4,
        miniml_version="0.1.0",
    )
    return info.model_copy(update=changes)


def test_front_matter_is_hugging_face_metadata() -> None:
    card = ModelCard(render_card(classifier()))
    data = card.data
    assert data.license == "other" and data.license_name == "mixed-training-data-licenses"
    assert data.datasets == ["langs"] and data.pipeline_tag == "text-classification"
    assert data.metrics == ["accuracy", "f1"] and "miniml" in data.tags
    results = {(r.metric_type, r.metric_name): r.metric_value for r in data.eval_results}
    assert results == {("accuracy", "accuracy"): 0.91, ("f1", "macro_f1"): 0.9}
    assert data.eval_results[0].dataset_name == "langs/fp123" and data.eval_results[0].dataset_split == "test"
    assert data.base_model is None and data.library_name is None  # from scratch: not a transformers model


def test_body_names_data_metrics_limits() -> None:
    text = render_card(classifier())
    assert "Dataset `langs`, fingerprint `fp123`." in text
    assert "Rows: train 300, validation 30, test 30." in text
    assert "| other | 100 | 10 |" in text  # rows per label, train before test
    assert "[da_ddt-ud-test.conllu](https://example.org/ud/da_ddt-ud-test.conllu) | CC BY-SA 4.0" in text
    assert "CC BY-SA 3.0 (Wikipedia text) → `cc-by-sa-3.0`" in text
    assert "| nb | 0.810 | 0.810 | 0.810 | 10 |" in text  # per-class table with test support
    assert "- `other`: is 50, fo 30, en 20" in text
    # the catch-all label's languages are a known limit; single-kind labels are not
    assert "`other` was trained on rows whose `lang` is one of: is, fo, en." in text
    assert "`nb` was trained on" not in text and "`da` was trained on" not in text
    assert "Weakest label on test: `nb` (F1 0.810)" in text
    assert "divided by 1.4 before the softmax" in text and "Trained in MLflow run `r1`" in text


def test_optimized_version_card_has_lineage_and_prefixed_metrics() -> None:
    lineage = {
        "parent": {"uri": "models:/langid/1", "name": "langid", "version": 1},
        "steps": [
            {"step": "onnx_export", "opset": 17, "max_abs_diff": 1e-6},
            {"step": "int8", "per_channel": True},
        ],
        "parity": {"final_max_abs_diff": 0.012, "samples": 30},
        "parent_lineage": {"run_id": "r1"},
    }
    metrics = {f"test_{k}": v for k, v in METRICS.items()}
    text = render_card(classifier(runtime="onnx", metrics=metrics, lineage=lineage))
    assert "- Optimized from `models:/langid/1` (version 1)." in text
    assert "- Step `int8`: per_channel True" in text and "- Trained in MLflow run `r1`." in text
    assert "| da | 0.950 | 0.950 | 0.950 | 10 |" in text
    assert "differ from its parent's by up to 0.012" in text
    card = ModelCard(text)
    assert {"int8", "onnx"} <= set(card.data.tags)
    assert {r.metric_name for r in card.data.eval_results} == {"accuracy", "macro_f1"}


def test_generative_and_legacy_cards() -> None:
    info = ModelInfo(
        name="sql",
        task="causal_lm",
        architecture="hf",
        base_model="minilm",
        dataset={"name": "wikisql-mini", "fingerprint": "abc"},  # written before dataset facts existed
        metrics={"exact_match": 0.2, "token_f1": 0.8},
        preprocessing={"kind": "causal_lm", "max_input_tokens": 128},
    )
    text = render_card(info)
    data = ModelCard(text).data
    assert (
        data.pipeline_tag == "text-generation" and data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    )
    assert data.license is None  # no sources recorded: no license claimed
    assert "Generated text is not checked for correctness" in text and "cut to that length" in text
    assert "| label |" not in text


def test_transformers_claim_follows_the_folder() -> None:
    assert loads_in_transformers(classifier(architecture="hf", logit_temperature=1.0))
    assert not loads_in_transformers(classifier(architecture="hf"))  # an unfolded temperature
    assert not loads_in_transformers(classifier(architecture="hf_mean_pool", logit_temperature=1.0))
    assert not loads_in_transformers(classifier(architecture="hf", logit_temperature=1.0, runtime="onnx"))
    text = render_card(classifier(architecture="hf_mean_pool"))
    assert "Plain `transformers` refuses this folder on purpose" in text and "hf_config.json" in text
    assert (
        ModelCard(render_card(classifier(architecture="hf", logit_temperature=1.0))).data.library_name
        == "transformers"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CC BY-SA 4.0 (see each treebank's LICENSE.txt)", "cc-by-sa-4.0"),
        ("CC0 1.0 (Sprakbanken NPK); repo Apache-2.0", "cc0-1.0"),
        ("CC BY 2.0 FR (Tatoeba.org sentences)", "cc-by-2.0"),
        ("CC BY-NC-SA 4.0", "cc-by-nc-sa-4.0"),
        ("MIT repo; SST text from Socher et al. 2013", "mit"),
        ("derived from WikiSQL (BSD-3-Clause)", "bsd-3-clause"),
        ("ask the author", None),
    ],
)
def test_license_ids(text: str, expected: str | None) -> None:
    assert license_id(text) == expected


def test_card_license() -> None:
    assert card_license([]) == (None, None)
    assert card_license(["CC BY-SA 4.0 (a)", "CC BY-SA 4.0 (b)"]) == ("cc-by-sa-4.0", None)
    assert card_license(["CC BY-SA 4.0", "MIT"])[0] == "other"
    assert card_license(["homemade"])[0] == "other"


def test_hub_base_model(tmp_path: Path) -> None:
    assert hub_base_model("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_base_model("google/flan-t5-small") == "google/flan-t5-small"
    assert hub_base_model(str(tmp_path)) is None and hub_base_model(None) is None


def test_write_info_writes_the_card_first(tmp_path: Path) -> None:
    info = classifier()
    write_info(tmp_path, info)
    assert (tmp_path / CARD_FILE).read_text() == render_card(info)
    write_info(tmp_path, info.model_copy(update={"metrics": {"accuracy": 0.5}}))
    assert "| accuracy | 0.5000 |" in (tmp_path / CARD_FILE).read_text()  # rewritten with miniml.json


def test_card_text_comes_from_the_task() -> None:
    for name in ("classification", "seq2seq", "causal_lm"):
        assert card_text(name) is get_task(name).card
    assert card_text("no-such-task") is GENERIC
    text = render_card(classifier(task="no-such-task", logit_temperature=1.0))  # facts only, no task words
    assert (
        text.startswith("---\n") and "no-such-task model `langid`" in text and "| accuracy | 0.9100 |" in text
    )
    assert "Closed label set" not in text and "ModelCard" not in text

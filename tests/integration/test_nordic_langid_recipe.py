"""The shipped nordic-langid recipe (examples/nordic-langid/*.yaml) learns the five classes from a slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from miniml.config import load_config
from miniml.data.prepare import PrepareConfig, prepare
from miniml.tasks import load_predictor
from miniml.tasks.classification import ClassificationConfig
from miniml.train import fit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nordic-langid"

# Written for this test (not from the corpora): each a clear case of its class.
SENTENCES = {
    "da": "Jeg ved ikke hvad han sagde til hende i går aftes.",
    "nb": "Jeg vet ikke hva han sa til henne i går kveld.",
    "nn": "Eg veit ikkje kva han sa til henne i går kveld.",
    "sv": "Jag vet inte vad han sa till henne i går kväll.",
    "other": "I do not know what he told her last night.",
}


def test_recipe_reaches_a_sane_f1_on_a_slice(mirror_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIML_DATA_MIRROR", str(mirror_dir))
    dataset = prepare(load_config(PrepareConfig, EXAMPLE / "data.yaml"))
    slice_ = [
        f"dataset={dataset.path}",
        "max_train_examples=10000",
        "epochs=2",
        "threads=1",
        "register_model=false",
    ]
    config = load_config(ClassificationConfig, EXAMPLE / "train.yaml", slice_)
    outcome = fit(config)

    assert outcome.metrics["macro_f1"] > 0.88, outcome.metrics  # full recipe: ~0.96 (README, bench)
    assert outcome.evaluation.details.per_class["nn"]["f1"] > 0.8  # type: ignore[attr-defined]
    predictor = load_predictor(outcome.model_folder)
    probs = predictor.predict_proba(list(SENTENCES.values()))
    got = np.array(predictor.info.labels)[probs.argmax(axis=1)].tolist()
    assert got == list(SENTENCES), dict(zip(SENTENCES, got, strict=True))

"""The promotion gate across test splits: a champion tested on another dataset is re-evaluated.

Two tiny real models (hashing_bag, a few steps) are trained on two toy datasets with different
fingerprints. The champion's stored figure comes from its own split, so the gate must evaluate it on the
candidate's test split with ``miniml.evaluate.evaluate_model`` before comparing.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import seed_embedded_store, shared_blank_store

from miniml.data.dataset import Dataset, write_dataset
from miniml.errors import RegistryError
from miniml.registry import promote, store
from miniml.runtime import resolve

WORDS = {
    "da": "hej med dig hvordan går det godt jeg er glad i dag hvad siger du".split(),  # noqa: SIM905
    "sv": "jag heter anna och bor i stockholm det är bra idag vad säger du".split(),  # noqa: SIM905
    "nn": "eg veit ikkje kva eg skal seie no men det er fint her".split(),  # noqa: SIM905
}


@pytest.fixture(autouse=True)
def embedded(miniml_home: Path) -> None:
    seed_embedded_store(miniml_home, shared_blank_store())


def toy_dataset(fingerprint: str, seed: int) -> Dataset:
    def frame(n: int, offset: int) -> pd.DataFrame:
        rng = random.Random(seed * 100 + offset)
        rows = []
        for _ in range(n):
            label = rng.choice(sorted(WORDS))
            rows.append({"input": " ".join(rng.choices(WORDS[label], k=rng.randint(3, 8))), "target": label})
        return pd.DataFrame(rows)

    return write_dataset(
        "toy", fingerprint, {"train": frame(240, 1), "validation": frame(60, 2), "test": frame(60, 3)}
    )


def train_folder(dataset: Dataset, max_steps: int) -> Path:
    from miniml.tasks.classification import ClassificationConfig
    from miniml.train.run import fit

    config = ClassificationConfig.model_validate(
        {
            "model_name": "gate-eval",
            "dataset": str(dataset.path),
            "model": {"kind": "hashing_bag", "buckets": 2048, "dim": 16},
            "max_steps": max_steps,
            "batch_size": 16,
            "learning_rate": 0.05,
            "eval_steps": max_steps,
            "threads": 1,
        }
    )
    return fit(config).model_folder


def test_champion_from_another_split_is_re_evaluated_on_the_candidates() -> None:
    from miniml.evaluate import evaluate_model, score_of

    split_a, split_b = toy_dataset("fp-split-a", 1), toy_dataset("fp-split-b", 2)
    weak = store.register_model("gate-eval", train_folder(split_a, max_steps=1))
    strong = store.register_model("gate-eval", train_folder(split_b, max_steps=45))
    assert weak.info is not None and weak.info.dataset["fingerprint"] == "fp-split-a"
    assert promote.promote("gate-eval", weak.version).promoted

    with pytest.raises(RegistryError, match="no evaluation function"):
        promote.promote("gate-eval", strong.version)  # the registry never runs a model by itself
    result = promote.promote("gate-eval", strong.version, evaluate=score_of)

    expected = evaluate_model(resolve(weak.uri).path, str(split_b.path), "test").metrics["macro_f1"]
    assert result.champion_score == pytest.approx(expected)
    assert result.candidate_score == pytest.approx(strong.info.metrics["macro_f1"])  # stored, same split
    assert "re-evaluated on the candidate's test split (toy/fp-split-b)" in result.reason
    assert result.promoted == (result.candidate_score > result.champion_score)
    assert result.promoted, result
    assert store.get_version("gate-eval", "champion").version == strong.version

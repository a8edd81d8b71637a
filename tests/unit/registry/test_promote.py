"""The promotion gate against a real embedded MLflow store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from miniml.errors import ConfigError, RegistryError
from miniml.registry import store
from miniml.registry.promote import (
    beats,
    gate_config,
    lower_is_better,
    promote,
    set_gate,
)

MakeFolder = Callable[..., Path]


def register(model_folder: MakeFolder, name: str = "gate", **info: object) -> int:
    return store.register_model(name, model_folder(name, **info)).version


def champion_version(name: str = "gate") -> int:
    return store.get_version(name, "champion").version


def test_beats_respects_margin_and_direction() -> None:
    assert beats(0.80, 0.79, 0.0, "macro_f1")
    assert not beats(0.80, 0.80, 0.0, "macro_f1")
    assert not beats(0.80, 0.79, 0.02, "macro_f1")
    assert beats(0.80, 0.77, 0.02, "macro_f1")
    assert lower_is_better("eval_loss") and lower_is_better("perplexity")
    assert beats(1.0, 1.5, 0.1, "loss") and not beats(1.45, 1.5, 0.1, "loss")


def test_first_version_becomes_champion(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"macro_f1": 0.70})
    result = promote("gate", v1)
    assert result.promoted and result.champion_version is None and result.reason == "no champion yet"
    assert result.candidate_score == 0.70
    assert champion_version() == v1


def test_better_candidate_on_same_split_takes_champion(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"macro_f1": 0.70})
    v2 = register(model_folder, metrics={"macro_f1": 0.75})
    promote("gate", v1)
    result = promote("gate", v2)
    assert result.promoted
    assert (result.candidate_score, result.champion_score, result.champion_version) == (0.75, 0.70, v1)
    assert "stored test macro_f1 on dataset fp-toy-1" in result.reason
    assert champion_version() == v2
    assert "miniml.promoted.champion" in store.get_version("gate", v2).tags


def test_worse_or_equal_candidate_is_refused_unless_forced(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"macro_f1": 0.75})
    v2 = register(model_folder, metrics={"macro_f1": 0.75})
    v3 = register(model_folder, metrics={"macro_f1": 0.70})
    promote("gate", v1)
    for candidate in (v2, v3):
        refused = promote("gate", candidate)
        assert not refused.promoted and "does not beat champion v1" in refused.reason
        assert champion_version() == v1
    forced = promote("gate", v3, force=True)
    assert forced.promoted and forced.reason.startswith("forced")
    assert (forced.candidate_score, forced.champion_score) == (0.70, 0.75)
    assert champion_version() == v3


def test_margin_and_test_prefixed_metrics(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"test_accuracy": 0.80})
    v2 = register(model_folder, metrics={"test_accuracy": 0.81})
    promote("gate", v1)
    assert not promote("gate", v2, metric="accuracy", margin=0.02).promoted
    assert promote("gate", v2, metric="accuracy", margin=0.005).promoted
    assert champion_version() == v2


def test_promoting_the_champion_again_is_a_no_op(model_folder: MakeFolder) -> None:
    v1 = register(model_folder)
    promote("gate", v1)
    again = promote("gate", v1)
    assert again.promoted and again.reason == "already the champion"


def test_other_aliases_and_unknown_versions(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"macro_f1": 0.7})
    assert promote("gate", v1, alias="challenger").promoted
    assert store.get_version("gate", "challenger").version == v1
    with pytest.raises(RegistryError, match="has no version 7"):
        promote("gate", 7)
    with pytest.raises(RegistryError, match="no registered model 'nope'"):
        promote("nope", 1)


def test_without_a_recorded_dataset_the_gate_cannot_compare(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"macro_f1": 0.7})
    v2 = register(model_folder, metrics={"macro_f1": 0.9}, dataset={})
    promote("gate", v1)
    with pytest.raises(RegistryError, match="does not record the dataset") as err:
        promote("gate", v2)
    assert "--force" in str(err.value)
    assert champion_version() == v1


def test_gate_settings_precedence(model_folder: MakeFolder) -> None:
    register(model_folder)
    assert gate_config("gate").model_dump() == {"alias": "champion", "metric": "macro_f1", "margin": 0.0}
    set_gate("gate", metric="accuracy", margin=0.01)
    assert gate_config("gate").metric == "accuracy"
    env = {"MINIML_PROMOTE__MARGIN": "0.05"}
    assert gate_config("gate", environ=env).margin == 0.05
    assert gate_config("gate", ["margin=0.1"], environ=env).margin == 0.1
    with pytest.raises(ConfigError, match="margin"):
        gate_config("gate", ["margin=-1"])
    with pytest.raises(ConfigError, match="margin"):
        set_gate("gate", margin=-0.5)


def test_another_split_is_scored_by_the_evaluation_function(model_folder: MakeFolder) -> None:
    v1 = register(model_folder, metrics={"macro_f1": 0.9}, dataset={"name": "toy", "fingerprint": "fp-a"})
    v2 = register(model_folder, metrics={"macro_f1": 0.7}, dataset={"name": "toy", "fingerprint": "fp-b"})
    promote("gate", v1)
    with pytest.raises(RegistryError, match="no evaluation function"):
        promote("gate", v2)
    asked: list[tuple[str, str]] = []

    def evaluate(folder: Path, dataset: str, metric: str) -> float | None:
        asked.append((dataset, metric))
        return 0.6  # the champion scores lower on the candidate's split

    result = promote("gate", v2, evaluate=evaluate)
    assert asked == [("toy/fp-b", "macro_f1")]  # the candidate's stored score needs no evaluation
    assert result.promoted and (result.candidate_score, result.champion_score) == (0.7, 0.6)
    assert champion_version() == v2

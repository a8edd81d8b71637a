from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from miniml.errors import ModelError
from miniml.monitor.profile import build_profile, read_profile, write_profile

LABELS = ["da", "sv"]


def fake_proba(texts: list[str]) -> np.ndarray:
    """'sv' when the text has an 'ä', else 'da'; confidence from length."""
    rows = []
    for t in texts:
        p = min(0.99, 0.5 + len(t) / 100)
        rows.append([1 - p, p] if "ä" in t else [p, 1 - p])
    return np.array(rows, dtype=np.float32)


def make_profile(embed: bool = False) -> object:
    train = [f"hej med dig {i}" for i in range(50)] + [f"jag är här {i}" for i in range(50)]
    validation = ["hej med dig", "jag är här nu", "helt ukendt ord"]
    return build_profile(
        model="toy",
        labels=LABELS,
        train=train,
        validation=validation,
        predict_proba=fake_proba,
        embed=(lambda ts: np.ones((len(ts), 4))) if embed else None,
        dataset={"name": "toy", "fingerprint": "abc"},
    )


def test_profile_holds_every_signal_and_round_trips(tmp_path: Path) -> None:
    profile = make_profile(embed=True)
    assert profile.train_rows == 100 and profile.validation_rows == 3
    assert sum(profile.chars.counts) == 100 and sum(profile.confidence.counts) == 3
    assert profile.predicted_labels == {"da": 2, "sv": 1}
    assert profile.oov_unknown == 4 and profile.oov_tokens == 10  # nu, helt, ukendt, ord: not in train
    assert set(profile.scripts) == {"Latin"}
    assert profile.embeddings is not None and profile.embeddings.array().shape == (3, 4)
    file = write_profile(tmp_path, profile)
    assert file.name == "reference.json"
    again = read_profile(tmp_path)
    assert again.model_dump() == profile.model_dump()
    assert again.vocab().unknown(["hej", "zzz"]) == 1


def test_missing_or_damaged_profile_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="miniml monitor profile"):
        read_profile(tmp_path)
    (tmp_path / "reference.json").write_text("{}")
    with pytest.raises(ModelError, match="not a valid reference profile"):
        read_profile(tmp_path)


def test_empty_validation_split_is_refused() -> None:
    with pytest.raises(ModelError, match="validation"):
        build_profile(model="m", labels=LABELS, train=["a"], validation=[], predict_proba=fake_proba)

from __future__ import annotations

import random

import numpy as np
import pytest

from miniml.monitor.drift import compare, thresholds_with
from miniml.monitor.profile import build_profile
from miniml.monitor.window import DriftMonitor, SlidingWindow

WORDS = [
    "hej",
    "med",
    "dig",
    "hvordan",
    "går",
    "det",
    "godt",
    "jeg",
    "er",
    "glad",
    "i",
    "dag",
    "hvad",
    "siger",
    "du",
]
LABELS = ["da", "other"]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))


def proba(texts: list[str]) -> np.ndarray:
    """A toy model: 'da' when most words are known, confidence by share of known words."""
    rows = []
    for t in texts:
        ws = t.split()
        known = sum(w in WORDS for w in ws) / max(1, len(ws))
        p = 0.5 + 0.49 * known
        rows.append([p, 1 - p])
    return np.array(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def profile() -> object:
    rng = random.Random(0)
    return build_profile(
        model="toy",
        labels=LABELS,
        train=[sentence(rng) for _ in range(3000)],
        validation=[sentence(rng) for _ in range(1000)],
        predict_proba=proba,
    )


def shuffled(text: str, rng: random.Random) -> str:
    return " ".join("".join(rng.sample(w, len(w))) for w in text.split())


def test_in_distribution_windows_raise_no_alarm(profile: object) -> None:
    rng = random.Random(1)
    for _ in range(5):
        texts = [sentence(rng) for _ in range(1000)]
        results = compare(profile, texts, proba(texts))  # type: ignore[arg-type]
        assert not any(r.drift_detected for r in results.values()), results


def test_shuffled_characters_and_longer_texts_drift(profile: object) -> None:
    rng = random.Random(2)
    texts = [shuffled(sentence(rng), rng) for _ in range(1000)]
    results = compare(profile, texts, proba(texts))  # type: ignore[arg-type]
    assert results["oov_rate"].drift_detected and results["oov_rate"].p_value < 1e-6  # type: ignore[operator]
    assert results["confidence"].drift_detected
    assert not results["chars"].drift_detected  # same lengths: shuffling keeps them
    long = [" ".join([sentence(rng)] * 4) for _ in range(1000)]
    results = compare(profile, long, proba(long))  # type: ignore[arg-type]
    assert results["chars"].drift_detected and results["tokens"].drift_detected
    cyrillic = ["привет как дела у тебя"] * 1000
    assert compare(profile, cyrillic, proba(cyrillic))["scripts"].drift_detected  # type: ignore[arg-type]


def test_unknown_threshold_names_are_refused() -> None:
    assert thresholds_with({"labels": 0.2})["labels"] == 0.2
    with pytest.raises(ValueError, match="unknown drift signal"):
        thresholds_with({"lables": 0.2})


def test_window_keeps_the_last_inputs_within_age() -> None:
    now = [0.0]
    window = SlidingWindow(size=3, max_age_s=10, clock=lambda: now[0])
    window.add(["a", "b"], [1, 2])
    now[0] = 5
    window.add(["c", "d"], [3, 4])
    texts, outputs, age = window.snapshot()
    assert (texts, outputs, age) == (["b", "c", "d"], [2, 3, 4], 5.0)
    now[0] = 12
    assert window.snapshot()[0] == ["c", "d"]  # "b" is 12 s old
    assert window.added == 4


def test_monitor_verdicts_need_a_profile_and_enough_inputs(profile: object) -> None:
    none = DriftMonitor(None, model="toy", version=1)
    assert none.report().reason == "this model version has no reference profile"
    monitor = DriftMonitor(profile, model="toy", version=3, size=500, min_inputs=100, min_interval_s=0)  # type: ignore[arg-type]
    rng = random.Random(3)
    texts = [sentence(rng) for _ in range(50)]
    monitor.record(texts, list(proba(texts)))
    early = monitor.report()
    assert not early.drift_detected and "at least 100" in (early.reason or "")
    texts = [shuffled(sentence(rng), rng) for _ in range(600)]
    monitor.record(texts, list(proba(texts)))
    report = monitor.report()
    assert report.drift_detected and report.window.size == 500 and report.version == 3
    assert monitor.report() is report  # nothing new: the verdict is reused

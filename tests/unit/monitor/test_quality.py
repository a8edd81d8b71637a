from __future__ import annotations

from pathlib import Path

import pytest

from miniml.monitor.quality import FeedbackLog, OnlineQuality, read_feedback, same_answer, version_scores


def test_online_accuracy_is_exact_and_windowed() -> None:
    quality = OnlineQuality(window=4)
    results = [quality.add(t, p) for t, p in [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("a", "a")]]
    assert results == [True, False, True, True, True]
    summary = quality.summary()
    assert (summary.count, summary.window) == (5, 4)
    assert summary.accuracy == pytest.approx(3 / 4)  # the first pair left the window
    assert summary.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert OnlineQuality().summary().accuracy is None


def test_generated_answers_match_up_to_case_and_spacing() -> None:
    assert same_answer("SELECT a  FROM t", "select a from t")
    assert not same_answer("da", "sv")


def test_feedback_log_round_trip_and_scores(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "fb" / "m.jsonl")
    rows = [
        {"input": "x", "label": "da", "answers": {"champion": {"version": 1, "prediction": "da"}}},
        {
            "input": "y",
            "label": "sv",
            "answers": {
                "champion": {"version": 1, "prediction": "nb"},
                "challenger": {"version": 2, "prediction": "sv"},
            },
        },
    ]
    log.append(rows)
    with log.path.open("a") as fh:
        fh.write('{"broken')  # a crash mid-line: skipped
    read = list(read_feedback(log.path))
    assert [r["input"] for r in read] == ["x", "y"] and "time" in read[0]
    assert version_scores(read) == {1: (1, 2), 2: (1, 1)}

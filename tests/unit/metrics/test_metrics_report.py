import json

import numpy as np

from miniml.metrics.classification import classification_metrics
from miniml.metrics.report import write_report


def test_report_files(tmp_path) -> None:
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), ["neg", "pos"])
    history = [
        {"step": 1, "loss": 1.0},
        {"step": 2, "loss": 0.5},
        {"step": 2, "eval_loss": 0.7, "eval_macro_f1": 0.6},
    ]
    out = write_report(tmp_path / "r", m, {"model": "demo", "dataset": "toy/abc"}, history)
    data = json.loads((out / "metrics.json").read_text())
    assert data["metrics"]["accuracy"] == m.accuracy and data["confusion_matrix"] == [[1, 0], [1, 1]]
    text = (out / "report.md").read_text()
    assert "| pos |" in text and "confusion_matrix.png" in text and "curves.png" in text
    for name in ("confusion_matrix.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_curves_without_history(tmp_path) -> None:
    m = classification_metrics(np.array([0]), np.array([0]), ["a", "b"])
    out = write_report(tmp_path, m, {})
    assert not (out / "curves.png").exists()


def test_report_has_length_buckets_and_ece(tmp_path) -> None:
    texts = ["kort", "en lidt længere sætning her", "x " * 30]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = classification_metrics(np.array([0, 1, 1]), probs.argmax(1), ["da", "sv"], texts=texts, probs=probs)
    out = write_report(tmp_path, m, {"model": "demo"})
    text = (out / "report.md").read_text()
    assert "| expected calibration error (15 bins) |" in text
    assert "| words | all | da | sv |" in text
    assert "| 1-3 | 1.0000 (1) | 1.0000 (1) | - |" in text
    assert "| 21+ | 0.0000 (1) | - | 0.0000 (1) |" in text
    data = json.loads((out / "metrics.json").read_text())
    assert data["by_length"]["4-8"]["per_label"]["sv"] == {"accuracy": 1.0, "support": 1}
    assert data["metrics"]["accuracy/words_21_plus"] == 0.0 and "ece" in data["metrics"]

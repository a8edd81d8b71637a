import json

import numpy as np

from miniml.evaluate.metrics import classification_metrics
from miniml.evaluate.report import write_report


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

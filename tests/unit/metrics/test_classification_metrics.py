import numpy as np
import pytest

from miniml.metrics.classification import classification_metrics


def test_against_hand_computed() -> None:
    labels = ["a", "b", "c"]
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, labels)
    assert m.accuracy == pytest.approx(4 / 6)
    # a: P 2/2 R 2/3; b: P 1/2 R 1/2; c: P 1/2 R 1/1
    f1 = {"a": 2 * 1 * (2 / 3) / (1 + 2 / 3), "b": 0.5, "c": 2 * 0.5 * 1 / 1.5}
    for label, value in f1.items():
        assert m.per_class[label]["f1"] == pytest.approx(value)
    assert m.macro["f1"] == pytest.approx(sum(f1.values()) / 3)
    assert m.weighted["f1"] == pytest.approx((3 * f1["a"] + 2 * f1["b"] + 1 * f1["c"]) / 6)
    assert m.macro["precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    summary = m.summary()
    assert summary["f1/c"] == pytest.approx(f1["c"]) and summary["macro_f1"] == pytest.approx(m.macro["f1"])


def test_absent_class_scores_zero_without_warning() -> None:
    m = classification_metrics(np.array([0, 0]), np.array([0, 0]), ["a", "b"])
    assert m.per_class["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0.0}
    assert m.confusion == [[2, 0], [0, 0]]


def test_length_buckets_and_ece_with_texts_and_probs() -> None:
    labels = ["a", "b"]
    texts = ["one", "one two three four", "w " * 9, "w " * 25, "two words"]
    y_true = np.array([0, 0, 1, 1, 1])
    y_pred = np.array([0, 1, 1, 1, 0])
    probs = np.eye(2)[y_pred] * 0.8 + 0.1
    m = classification_metrics(y_true, y_pred, labels, texts=texts, probs=probs)
    assert list(m.by_length) == ["1-3", "4-8", "9-20", "21+"]
    assert m.by_length["1-3"]["support"] == 2 and m.by_length["1-3"]["accuracy"] == 0.5
    assert m.by_length["1-3"]["per_label"] == {
        "a": {"accuracy": 1.0, "support": 1},
        "b": {"accuracy": 0.0, "support": 1},
    }
    assert m.by_length["4-8"]["accuracy"] == 0.0 and m.by_length["21+"]["accuracy"] == 1.0
    summary = m.summary()
    assert summary["accuracy/words_4-8"] == 0.0 and summary["accuracy/words_21_plus"] == 1.0
    assert summary["ece"] == pytest.approx(abs(3 / 5 - 0.9))  # all confidences 0.9, 3 of 5 right
    assert m.to_json()["by_length"]["9-20"]["support"] == 1


def test_without_texts_or_probs_no_buckets_or_ece() -> None:
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), ["a", "b"])
    assert m.by_length == {} and m.ece is None
    assert not any(k.startswith("accuracy/") or k == "ece" for k in m.summary())

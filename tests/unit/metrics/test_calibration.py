import numpy as np
import pytest

from miniml.metrics.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    temperature_fit,
    with_temperature,
)


def test_ece_against_hand_computed() -> None:
    # confidences 0.9, 0.9 (one right) → bin (13/15, 14/15]: |0.5 - 0.9|; 0.6 right → bin (8/15, 9/15]: 0.4
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    y_true = np.array([0, 0, 0])
    assert expected_calibration_error(probs, y_true) == pytest.approx((2 * 0.4 + 1 * 0.4) / 3)
    assert expected_calibration_error(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 0.0
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 0.0


def test_temperature_keeps_ranks_and_softens() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]], dtype=np.float32)
    assert with_temperature(probs, 1.0) is probs
    soft = with_temperature(probs, 2.0)
    assert soft.dtype == np.float32 and np.allclose(soft.sum(axis=1), 1.0)
    assert (soft.argmax(axis=1) == probs.argmax(axis=1)).all() and (
        soft.max(axis=1) < probs.max(axis=1)
    ).all()
    # softmax(log p / 2) ∝ sqrt(p)
    expected = np.sqrt(probs) / np.sqrt(probs).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(soft, expected, rtol=1e-5)


def over_confident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores from a model whose logits are 3x too large: true temperature 3."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 4)) * 1.5
    true_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = np.array([rng.choice(4, p=p) for p in true_probs])
    sharp = np.exp(3 * logits)
    return (sharp / sharp.sum(axis=1, keepdims=True)).astype(np.float32), y_true


def test_fit_recovers_the_temperature_and_lowers_ece_and_nll() -> None:
    probs, y_true = over_confident()
    assert fit_temperature(probs, y_true) == pytest.approx(3.0, rel=0.1)
    fit = temperature_fit(probs, y_true)
    assert fit["kept"] is True and fit["split"] == "validation"
    assert fit["ece_after"] < fit["ece_before"] / 3 and fit["nll_after"] < fit["nll_before"]
    assert nll(with_temperature(probs, float(fit["temperature"])), y_true) == pytest.approx(fit["nll_after"])


def test_fit_is_not_kept_when_it_does_not_help() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]] * 10, dtype=np.float32)  # perfect and certain: ECE 0
    fit = temperature_fit(probs, np.array([0, 1] * 10))
    assert fit["kept"] is False and fit["ece_before"] == 0.0

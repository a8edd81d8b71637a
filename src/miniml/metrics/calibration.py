"""Calibrated scores: expected calibration error (ECE) and temperature scaling.

ECE (Naeini et al., 2015; Guo et al., 2017): the test rows are put into ``bins`` equal-width bins by their
top probability (the confidence); ECE is the row-weighted mean of ``|accuracy - mean confidence|`` over
the bins. 0 means "a score of 0.9 is right 90% of the time".

Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T`` before the softmax: ranks,
hence predictions and accuracy, stay the same; ``T > 1`` softens over-confident scores. ``T`` is fitted
by minimising the negative log-likelihood on the validation split. Everything here works from
probabilities: ``log p`` equals the logits up to a per-row constant, which the softmax ignores, so
``softmax(log p / T)`` is the temperature-scaled output of any runtime.
"""

from __future__ import annotations

import numpy as np
import torch

_TINY = 1e-30  # float32 probabilities can underflow to 0; log(0) would poison the fit


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE of (N, C) probabilities against class ids ``y_true``, with ``bins`` equal-width bins."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(
        np.bincount(which, weights=correct, minlength=bins)
        - np.bincount(which, weights=confidence, minlength=bins)
    )
    return float(gap.sum() / count.sum())


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise, float32 (``T == 1`` returns the input unchanged)."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.maximum(np.asarray(probs, dtype=np.float64), _TINY)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The ``T`` minimising the negative log-likelihood of ``softmax(log p / T)`` (L-BFGS over log T)."""
    log_p = torch.log(torch.from_numpy(np.asarray(probs, dtype=np.float64)).clamp_min(_TINY))
    target = torch.from_numpy(np.asarray(y_true, dtype=np.int64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(log_p / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(np.exp(log_t.item()), 0.05, 20.0))


def nll(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(probs)), np.asarray(y_true)]
    return float(-np.log(np.maximum(picked, _TINY)).mean()) if len(picked) else 0.0


def temperature_fit(
    probs: np.ndarray, y_true: np.ndarray, split: str = "validation"
) -> dict[str, float | str | bool]:
    """Fit ``T`` on one split; ``kept`` says whether it lowers that split's ECE (else T stays 1).

    Returns what a model folder records about the fit: split, temperature, ECE and NLL before and after.
    """
    temperature = fit_temperature(probs, y_true)
    scaled = with_temperature(probs, temperature)
    before, after = expected_calibration_error(probs, y_true), expected_calibration_error(scaled, y_true)
    return {
        "split": split,
        "temperature": round(temperature, 6),
        "kept": bool(after < before),
        "ece_before": before,
        "ece_after": after,
        "nll_before": nll(probs, y_true),
        "nll_after": nll(scaled, y_true),
    }

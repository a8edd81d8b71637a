from __future__ import annotations

import numpy as np
import pytest

from miniml.monitor.stats import (
    bin_counts,
    domain_classifier,
    js_distance,
    proportion_shift,
    psi,
    quantile_edges,
)


def test_bins_follow_the_reference_quantiles() -> None:
    values = np.arange(1, 101)
    edges = quantile_edges(values, bins=4)
    assert edges == pytest.approx([1, 25.75, 50.5, 75.25, 100])
    assert bin_counts(values, edges).tolist() == [0, 25, 25, 25, 25, 0]
    assert bin_counts(np.array([0, 1000]), edges).tolist() == [1, 0, 0, 0, 0, 1]  # outside the range
    assert quantile_edges(np.full(50, 0.99)) == pytest.approx([0.99, 0.99])  # below, at, above


def test_psi_is_zero_for_equal_and_large_for_moved_mass() -> None:
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    # a textbook case: 50/50 → 90/10 is a large shift
    assert psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(0.4 * np.log(9), rel=1e-6)
    assert np.isfinite(psi(np.array([5, 5]), np.array([10, 0])))  # empty bin: floored, finite


def test_js_distance_over_the_union_of_categories() -> None:
    assert js_distance({"a": 5, "b": 5}, {"a": 1, "b": 1}) == pytest.approx(0.0)
    assert js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    assert 0 < js_distance({"a": 3, "b": 1}, {"a": 1, "b": 3}) < 1


def test_proportion_shift_with_a_chi_square_p_value() -> None:
    shift, p = proportion_shift(100, 1000, 300, 1000)
    assert shift == pytest.approx(0.2) and p < 1e-10
    shift, p = proportion_shift(100, 1000, 101, 1000)
    assert abs(shift) < 0.01 and p > 0.5
    assert proportion_shift(0, 100, 0, 100) == (0.0, 1.0)


def test_domain_classifier_tells_shifted_embeddings_apart() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 8))
    same_auc, same_p = domain_classifier(ref, rng.normal(size=(200, 8)))
    moved_auc, moved_p = domain_classifier(ref, rng.normal(loc=0.5, size=(200, 8)))
    assert 0.35 < same_auc < 0.65 and same_p > 0.01
    assert moved_auc > 0.85 and moved_p < 1e-6

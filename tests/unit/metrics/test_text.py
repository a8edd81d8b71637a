"""Text metrics against hand-computed values, and the references a split provides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import miniml.metrics.text as gm
from miniml.errors import ConfigError, DataError


def test_normalising_ignores_case_spacing_around_punctuation_and_width() -> None:
    assert gm.normalize("SELECT Notes FROM 1-1000181-1 WHERE x = 'A'") == gm.normalize(
        "select notes from 1 - 1000181 - 1 where x = ' a '"
    )
    assert gm.normalize_tokens("ＳＥＬＥＣＴ  a,b") == ["select", "a", ",", "b"]


def test_exact_match_counts_any_matching_reference() -> None:
    predictions = ["SELECT a FROM t", "select b from t", "nothing"]
    references = [["select a from t"], ["x", "SELECT b FROM t"], ["something"]]
    assert gm.exact_match(predictions, references) == pytest.approx(2 / 3)


def test_token_f1_matches_a_hand_computed_value() -> None:
    # prediction: select a from t (4 tokens); reference: select b from t where c (6); common: 3
    precision, recall = 3 / 4, 3 / 6
    expected = 2 * precision * recall / (precision + recall)
    assert gm.token_f1(["select a from t"], [["select b from t where c"]]) == pytest.approx(expected)
    assert gm.token_f1(["", "x"], [[""], ["y"]]) == pytest.approx(0.5)  # empty = empty counts as 1


def test_rouge_matches_hand_computed_values() -> None:
    # ROUGE-1: 3 of 4 unigrams shared, both sides 4 long → F = 0.75; ROUGE-2: bigrams "the cat", "cat sat",
    # "sat down" vs "the cat", "cat sat", "sat up": 2 of 3 → 2/3; LCS "the cat sat" = 3 of 4 → 0.75
    scores = gm.rouge(["the cat sat down"], [["the cat sat up"]])
    assert scores["rouge1"] == pytest.approx(0.75)
    assert scores["rouge2"] == pytest.approx(2 / 3)
    assert scores["rougeL"] == pytest.approx(0.75)
    best = gm.rouge(["the cat sat down"], [["a dog", "the cat sat down"]])
    assert best["rouge1"] == pytest.approx(1.0)


def test_text_metrics_reject_unknown_names_and_mismatched_lengths() -> None:
    with pytest.raises(ConfigError, match="unknown text metric"):
        gm.text_metrics(["bleu"], ["a"], [["a"]])
    with pytest.raises(DataError, match="2 predictions but 1 references"):
        gm.exact_match(["a", "b"], [["a"]])


def test_references_include_extra_reference_columns() -> None:
    frame = pd.DataFrame(
        {
            "input": ["x", "y"],
            "target": ["s1", "t1"],
            "summary2": ["s2", ""],
            "references": [np.array(["s3", "s1"]), np.array([])],
            "topic": ["not a reference", "no"],
        }
    )
    assert gm.references_of(frame) == [["s1", "s2", "s3"], ["t1"]]

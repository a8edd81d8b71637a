"""Recall@k and MRR of retrieving each query's relevant candidate by cosine similarity."""

import numpy as np
import pytest

from miniml.metrics.retrieval import rank_candidates, retrieval_metrics


def test_ranks_recall_and_mrr() -> None:
    candidates = np.eye(4, dtype=np.float32)  # four orthogonal directions
    queries = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 0, 0.2, 1], [0, 0, 0, 1]], dtype=np.float32)
    gold = np.array([0, 1, 2, 3])
    found = rank_candidates(queries * 5, candidates, gold)  # scale does not matter: cosine
    assert found.ranks.tolist() == [1, 2, 2, 1]
    assert found.best.tolist() == [0, 0, 3, 3]
    metrics = found.metrics((1, 2))
    assert metrics == pytest.approx({"recall_at_1": 0.5, "recall_at_2": 1.0, "mrr": 0.75})


def test_ties_count_for_the_query_and_empty_inputs_score_zero() -> None:
    same = np.ones((3, 2), dtype=np.float32)
    assert retrieval_metrics(same[:1], same, np.array([2])) == {
        "recall_at_1": 1.0,
        "recall_at_10": 1.0,
        "mrr": 1.0,
    }
    empty = np.zeros((0, 2), dtype=np.float32)
    assert retrieval_metrics(empty, same, np.zeros(0, dtype=np.int64))["mrr"] == 0.0


def test_chunks_give_the_same_ranks() -> None:
    rng = np.random.default_rng(0)
    queries, candidates = rng.normal(size=(50, 8)), rng.normal(size=(40, 8))
    gold = rng.integers(0, 40, size=50)
    whole = rank_candidates(queries, candidates, gold).ranks
    assert (rank_candidates(queries, candidates, gold, chunk=7).ranks == whole).all()

"""Retrieval metrics of embeddings: recall@k and mean reciprocal rank (MRR).

Each query has one relevant candidate (its ``gold`` index) among all candidates; candidates are ranked by
cosine similarity. A query's rank is 1 + the number of candidates scored strictly higher than its relevant
one (ties count in the query's favour, as in sentence-transformers' InformationRetrievalEvaluator).
``recall_at_k``: share of queries whose relevant candidate ranks k or better; ``mrr``: mean of 1 / rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Retrieval:
    """Ranks of the relevant candidates and each query's best candidate."""

    ranks: np.ndarray  # (N,) 1 = the relevant candidate came first
    best: np.ndarray  # (N,) index of each query's top candidate
    best_similarity: np.ndarray  # (N,)
    gold_similarity: np.ndarray  # (N,)

    def metrics(self, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
        if len(self.ranks) == 0:
            return {**{f"recall_at_{k}": 0.0 for k in ks}, "mrr": 0.0}
        out = {f"recall_at_{k}": float((self.ranks <= k).mean()) for k in ks}
        out["mrr"] = float((1.0 / self.ranks).mean())
        return out


def rank_candidates(
    queries: np.ndarray, candidates: np.ndarray, gold: np.ndarray, *, chunk: int = 1024
) -> Retrieval:
    """Rank every candidate for every query by cosine similarity; (N, D), (M, D), (N,) gold indices."""
    q, c = unit_rows(np.asarray(queries)), unit_rows(np.asarray(candidates))
    ranks, best, best_sim, gold_sim = [], [], [], []
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ c.T  # (n, M)
        rows = np.arange(len(sims))
        relevant = sims[rows, gold[start : start + chunk]]  # (n,)
        ranks.append(1 + (sims > relevant[:, None]).sum(axis=1))
        top = sims.argmax(axis=1)
        best.append(top)
        best_sim.append(sims[rows, top])
        gold_sim.append(relevant)
    if not ranks:
        empty = np.zeros(0)
        return Retrieval(empty.astype(np.int64), empty.astype(np.int64), empty, empty)
    return Retrieval(
        np.concatenate(ranks), np.concatenate(best), np.concatenate(best_sim), np.concatenate(gold_sim)
    )


def retrieval_metrics(
    queries: np.ndarray, candidates: np.ndarray, gold: np.ndarray, ks: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """``recall_at_k`` for each k and ``mrr`` (see the module docstring)."""
    return rank_candidates(queries, candidates, gold).metrics(ks)

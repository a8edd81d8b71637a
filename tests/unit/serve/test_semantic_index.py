"""The semantic cache's index: nearest per scope, threshold, guard, LRU and TTL."""

from __future__ import annotations

import numpy as np

from miniml.serve.semantic_index import SemanticIndex, entry_id


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


ROSS = "What is the nationality of Terrence Ross?"


def test_nearest_in_scope_above_the_threshold() -> None:
    index = SemanticIndex(3, max_entries=10, ttl_s=60)
    index.add("v1", ROSS, unit(1, 0, 0), b"canadian")
    index.add("v1", "how many rows", unit(0, 1, 0), b"5")
    hit = index.lookup("v1", "terrence ross nationality", unit(1, 0.1, 0), threshold=0.9, guard=True)
    assert hit.entry is not None and hit.entry.answer == b"canadian"
    assert 0.99 < hit.similarity <= 1.0
    miss = index.lookup("v1", "something else", unit(1, 1, 0), threshold=0.9, guard=True)
    assert miss.entry is None and 0.70 < miss.similarity < 0.72  # cos 45°, reported for the histogram
    other_scope = index.lookup("v2", ROSS, unit(1, 0, 0), threshold=0.5, guard=True)
    assert other_scope.entry is None  # another model version or settings: never answered


def test_the_guard_skips_to_a_neighbour_that_agrees() -> None:
    index = SemanticIndex(3, max_entries=10, ttl_s=60)
    index.add("v1", "What is the nationality of Kyle Lowry?", unit(1, 0, 0), b"lowry")
    index.add("v1", ROSS, unit(1, 0.2, 0), b"ross")
    query = "what nationality is Terrence Ross"
    found = index.lookup("v1", query, unit(1, 0.01, 0), threshold=0.9, guard=True)
    assert found.entry is not None and found.entry.answer == b"ross" and found.guarded
    unguarded = index.lookup("v1", query, unit(1, 0.01, 0), threshold=0.9, guard=False)
    assert unguarded.entry is not None and unguarded.entry.answer == b"lowry"  # the classic wrong hit
    only_lowry = SemanticIndex(3, max_entries=10, ttl_s=60)
    only_lowry.add("v1", "What is the nationality of Kyle Lowry?", unit(1, 0, 0), b"lowry")
    refused = only_lowry.lookup("v1", query, unit(1, 0, 0), threshold=0.9, guard=True)
    assert refused.entry is None and refused.guarded and refused.similarity > 0.99


def test_lru_evicts_the_least_recently_used() -> None:
    index = SemanticIndex(2, max_entries=2, ttl_s=60)
    index.add("s", "a", unit(1, 0), b"a")
    index.add("s", "b", unit(0, 1), b"b")
    assert index.lookup("s", "a", unit(1, 0), 0.9, guard=False).entry is not None  # a is used: b is older
    index.add("s", "c", unit(1, 1), b"c")
    assert len(index) == 2
    assert entry_id("s", "b") not in index and entry_id("s", "a") in index
    assert index.lookup("s", "b", unit(0, 1), 0.99, guard=False).entry is None


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    index = SemanticIndex(2, max_entries=10, ttl_s=30, clock=clock)
    index.add("s", "a", unit(1, 0), b"a")
    index.add("s", "b", unit(0, 1), b"b", ttl_s=5)  # pulled from Redis with 5 s left
    clock.now += 10
    assert index.lookup("s", "b", unit(0, 1), 0.9, guard=False).entry is None
    assert index.lookup("s", "a", unit(1, 0), 0.9, guard=False).entry is not None
    clock.now += 30
    assert index.purge() == 1 and len(index) == 0
    assert index.lookup("s", "a", unit(1, 0), 0.9, guard=False).entry is None


def test_storing_a_prompt_again_replaces_it() -> None:
    index = SemanticIndex(2, max_entries=10, ttl_s=60)
    index.add("s", "a", unit(1, 0), b"old")
    index.add("s", "a", unit(1, 0), b"new")
    assert len(index) == 1
    found = index.lookup("s", "a", unit(1, 0), 0.9, guard=False)
    assert found.entry is not None and found.entry.answer == b"new"

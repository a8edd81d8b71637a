"""The semantic cache's in-process vector index: prompts' embeddings per scope, LRU + TTL.

One usearch HNSW index (cosine) per scope — a scope is a model version, its sampling settings and the
embedder, so a lookup never crosses versions or settings. Entries live in one LRU (``max_entries`` for all
scopes together: the least recently used is evicted first) and expire ``ttl_s`` after they were stored.
An entry's id is a hash of its scope and prompt, so two replicas that store the same prompt store one
entry, and an entry pulled from Redis that is already here is skipped.

usearch (a maintained HNSW library with wheels for every platform) was chosen over faiss-cpu and hnswlib:
it removes entries in place (LRU and TTL need that), and its search of 10,000 entries takes microseconds.
Used from the event loop only, so there is no lock.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from usearch.index import Index

from miniml.serve.semantic_guard import Facts, agree, facts

NEIGHBOURS = 8  # nearest entries checked per lookup: the nearest may fail the guard while the next passes


def entry_id(scope: str, text: str) -> int:
    """A 63-bit id of (scope, prompt): the same on every replica."""
    digest = hashlib.blake2b(f"{scope}\x1f{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@dataclass(slots=True)
class Entry:
    """One cached prompt: its answer (the task codec's bytes) and when it expires (monotonic)."""

    id: int
    scope: str
    text: str
    facts: Facts
    answer: bytes
    expires: float


@dataclass(frozen=True, slots=True)
class Match:
    """A lookup's outcome: the entry that answers (None: a miss), the best similarity seen, and whether
    the guard turned down an entry above the threshold."""

    entry: Entry | None
    similarity: float
    guarded: bool = False


class SemanticIndex:
    """Embeddings of cached prompts by scope (see the module docstring)."""

    def __init__(
        self, dimensions: int, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.dimensions = dimensions
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._indexes: dict[str, Index] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: int) -> bool:
        return key in self._entries

    def add(
        self, scope: str, text: str, vector: np.ndarray, answer: bytes, ttl_s: float | None = None
    ) -> int:
        """Store ``text``'s ``vector`` (D,) and ``answer`` under ``scope``; returns the entry id."""
        key = entry_id(scope, text)
        if key in self._entries:
            self._drop(key)
        index = self._indexes.get(scope)
        if index is None:
            index = self._indexes[scope] = Index(ndim=self.dimensions, metric="cos", dtype="f32")
        index.add(key, np.asarray(vector, dtype=np.float32))
        expires = self._clock() + (self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s))
        self._entries[key] = Entry(key, scope, text, facts(text), answer, expires)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))  # least recently used
        return key

    def lookup(self, scope: str, text: str, vector: np.ndarray, threshold: float, guard: bool) -> Match:
        """The nearest live entry of ``scope`` at ``threshold`` or above (that agrees with ``text`` when
        ``guard``); a hit counts as a use (LRU)."""
        index = self._indexes.get(scope)
        if index is None or len(index) == 0:
            return Match(None, 0.0)
        found = index.search(np.asarray(vector, dtype=np.float32), min(NEIGHBOURS, len(index)))
        now = self._clock()
        best, guarded, mine = 0.0, False, None
        for key, distance in zip(found.keys.tolist(), found.distances.tolist(), strict=True):
            entry = self._entries.get(int(key))
            if entry is None:
                continue
            if entry.expires <= now:
                self._drop(entry.id)
                continue
            similarity = 1.0 - float(distance)
            best = max(best, similarity)
            if similarity < threshold:
                break  # neighbours come nearest first
            if guard:
                mine = mine or facts(text)
                if not agree(mine, entry.facts):
                    guarded = True
                    continue
            self._entries.move_to_end(entry.id)
            return Match(entry, similarity, guarded)
        return Match(None, best, guarded)

    def purge(self) -> int:
        """Drop expired entries; returns how many."""
        now = self._clock()
        expired = [k for k, e in self._entries.items() if e.expires <= now]
        for key in expired:
            self._drop(key)
        return len(expired)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        index = self._indexes[entry.scope]
        index.remove(key)
        if len(index) == 0:
            del self._indexes[entry.scope]  # a scope of an old model version goes away with its entries

"""The semantic cache of generation routes: a paraphrase of an earlier prompt gets the earlier answer.

On an exact-cache miss (:meth:`miniml.serve.engine.ServedModel.infer`) the normalised prompt is embedded
(``cache.semantic.embedder``, an embedding model, batched on its own worker thread like any model, on
``threads`` threads: one by default, since a lookup is mostly one short prompt and the served model
wants the other cores; a second intra-op thread on a busy 2-core machine made each embedding 2.6x
slower, not faster, as every operator waits for its slowest thread) and
looked up in a :class:`~miniml.serve.semantic_index.SemanticIndex` under its scope — the model version,
the sampling settings and constraint (the exact cache key without the prompt), and the embedder version —
so an answer never crosses model versions or settings. With ``embed_pattern`` only the part of the prompt
it selects is embedded and guarded (a text2sql question without its table and column header: a third of
the tokens; wikisql-mini's prompts embed in 6.3 s instead of 14.3 s), and the rest must be equal — all of
it, or what ``scope_pattern`` selects — which joins the scope, so two prompts about different tables never
share an answer however alike their questions. It answers when the cosine similarity reaches
``threshold`` and, with ``guard``, the prompts' numbers, quoted strings and names agree
(:mod:`miniml.serve.semantic_guard`). Only what the exact cache would keep is stored: greedy, non-streamed,
not cancelled answers of requests that did not opt out (``cache: false``).

Replicas share entries through plain Redis (no vector search needed: Debian's redis-server 7 works): each
entry is a hash ``PREFIX:e:ID`` (scope, prompt, float32 vector, answer) with a TTL, and its id goes into
the sorted set ``PREFIX:log`` scored by the time it was stored. Every ``sync_s`` each replica reads the ids
stored since its last pull and adds the entries it lacks to its own index. A Redis failure is logged (once
per 10 s) and skipped: lookups go on with what this replica has, requests never fail for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from miniml.errors import ConfigError, MinimlError
from miniml.runtime.embedder import Embedder
from miniml.runtime.loaded import LoadedModel
from miniml.serve.aliases import pin_torch_threads
from miniml.serve.batching import Batcher
from miniml.serve.logs import ThrottledWarning
from miniml.serve.metrics import ServeMetrics
from miniml.serve.semantic_index import Match, SemanticIndex, entry_id
from miniml.serve.settings import SemanticCacheSettings
from miniml.tasks.registry import load_model
from miniml.tasks.serving import normalize_text

log = logging.getLogger("miniml.serve")


def load_embedder(settings: SemanticCacheSettings, device: str | None = None) -> LoadedModel:
    """The semantic cache's embedding model (blocking); a clear ConfigError when it cannot be one.

    Loaded on ``settings.threads`` threads (an ONNX session takes its count at load); torch's count of the
    calling thread, which loading sets, is put back for whatever else this thread loads."""
    import torch

    before = torch.get_num_threads()
    try:
        model = load_model(settings.embedder, device=device, threads=settings.threads)
    except MinimlError as err:
        raise ConfigError(f"cache.semantic.embedder: {err}") from None
    finally:
        torch.set_num_threads(before)
    if not isinstance(model.predictor, Embedder):
        raise ConfigError(
            f"cache.semantic.embedder: model {model.name} is a {model.task} model, not an embedding model",
            hint="give an embedding model (task: embedding; `miniml models import minilm --name NAME`)",
        )
    return model


def _selected(m: re.Match[str]) -> tuple[int, int]:
    group = 1 if m.re.groups else 0
    return m.start(group), m.end(group)


def split_prompt(
    prompt: str, embed: re.Pattern[str] | None, scope: re.Pattern[str] | None
) -> tuple[str, str]:
    """(what must be equal, what is embedded) of a prompt under ``embed_pattern`` and ``scope_pattern``."""
    text, rest = prompt, ""
    if embed is not None and (m := embed.search(prompt)) is not None:
        start, end = _selected(m)
        if end > start:
            text, rest = prompt[start:end], prompt[:start] + "\x00" + prompt[end:]
    if scope is not None:
        m = scope.search(prompt)
        rest = "\x00unmatched" if m is None else prompt[slice(*_selected(m))]
    return rest, text


@dataclass(frozen=True, slots=True)
class Probe:
    """One prompt looked up: its scope, text, embedding and what the index answered."""

    scope: str
    text: str
    vector: np.ndarray
    match: Match


class SemanticCache:
    """The embedder, the index and the Redis sync (see the module docstring); one per server."""

    def __init__(self, settings: SemanticCacheSettings, embedder: LoadedModel, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.embedder = embedder
        self._dimensions = int(embedder.predictor.dimensions)
        self.index = SemanticIndex(self._dimensions, settings.max_entries, settings.ttl_s)
        self._metrics = metrics
        self._batcher: Batcher[str, None, np.ndarray | None] = Batcher(
            self._embed_batch,
            name="semantic-embedder",
            max_batch_size=64,
            max_wait_ms=0,  # a lookup waits for no company: prompts queued meanwhile form the next batch
            queue_size=4096,
            timeout_s=10.0,
            on_start=partial(pin_torch_threads, settings.threads),  # a torch embedder's threads
        )
        self._store = RedisEntries(settings, self._dimensions) if settings.url else None
        self._embed_re = re.compile(settings.embed_pattern) if settings.embed_pattern else None
        self._scope_re = re.compile(settings.scope_pattern) if settings.scope_pattern else None
        self._sync: asyncio.Task[None] | None = None

    def scope(self, model_key: str, settings_key: str) -> str:
        """The scope of a prompt: model version, sampling settings, embedder version."""
        raw = f"{model_key}\x1f{settings_key}\x1f{self.embedder.key}"
        return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()

    def split(self, scope: str, prompt: str) -> tuple[str, str]:
        """(scope, text to embed) of a normalised prompt: the scope grows by what must be equal."""
        rest, text = split_prompt(prompt, self._embed_re, self._scope_re)
        if not rest:
            return scope, text
        return f"{scope}:{hashlib.blake2b(rest.encode(), digest_size=12).hexdigest()}", text

    def start(self) -> None:
        """Start the embedder's worker and the Redis sync (on the running loop)."""
        self._batcher.start()
        if self._store is not None:
            self._sync = asyncio.create_task(self._follow(), name="semantic-sync")

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
        await self._batcher.close()
        if self._store is not None:
            await self._store.close()

    async def lookup(self, model: str, keys: list[tuple[str, str]]) -> list[Probe | None]:
        """Embed each (scope, prompt) and look it up; counts similarity, latency and guard refusals.
        None for a prompt longer than the embedder reads: its end would go unseen, so it is not cached."""
        started = time.perf_counter()
        split = [self.split(scope, normalize_text(text)) for scope, text in keys]
        _, vectors = await self._batcher.submit([text for _, text in split])
        s = self.settings
        probes = [
            None
            if vector is None
            else Probe(scope, text, vector, self.index.lookup(scope, text, vector, s.threshold, s.guard))
            for (scope, text), vector in zip(split, vectors, strict=True)
        ]
        seconds = time.perf_counter() - started
        for probe in probes:
            if probe is not None:
                self._metrics.observe_semantic(model, probe.match.similarity, seconds, probe.match.guarded)
        return probes

    async def store(self, entries: list[tuple[Probe, bytes]]) -> None:
        """Add computed answers to the index (and to Redis, for the other replicas)."""
        for probe, answer in entries:
            self.index.add(probe.scope, probe.text, probe.vector, answer)
        if self._store is not None and entries:
            await self._store.put([(p.scope, p.text, p.vector, a) for p, a in entries])

    def _embed_batch(self, texts: list[str]) -> tuple[None, list[np.ndarray | None]]:
        embedder: Embedder = self.embedder.predictor
        cap = embedder.settings.max_tokens
        fits = [i for i, n in enumerate(embedder.count_tokens(texts)) if n <= cap]
        vectors: list[np.ndarray | None] = [None] * len(texts)
        for i, vector in zip(fits, embedder.embed([texts[i] for i in fits]), strict=True):  # (B, D)
            vectors[i] = vector
        return None, vectors

    async def _follow(self) -> None:
        assert self._store is not None
        while True:
            for scope, text, vector, answer, ttl_s in await self._store.pull(self.index):
                self.index.add(scope, text, vector, answer, ttl_s=ttl_s)
            self.index.purge()
            await asyncio.sleep(self.settings.sync_s)


class RedisEntries:
    """Entries in plain Redis hashes with a TTL, and a sorted set of their ids by time stored."""

    def __init__(self, settings: SemanticCacheSettings, dimensions: int) -> None:
        import redis.asyncio

        assert settings.url is not None
        self._redis: Any = redis.asyncio.Redis.from_url(
            settings.url, socket_timeout=settings.timeout_s, socket_connect_timeout=settings.timeout_s
        )
        self._prefix = settings.prefix
        self._ttl_ms = int(settings.ttl_s * 1000)
        self._dimensions = dimensions
        self._since_ms = 0
        self._warning = ThrottledWarning(
            log, "redis unavailable for the semantic cache, going on without it: %s"
        )

    def _key(self, entry: int | str) -> str:
        return f"{self._prefix}:e:{entry}"

    async def put(self, entries: list[tuple[str, str, np.ndarray, bytes]]) -> None:
        now = int(time.time() * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for scope, text, vector, answer in entries:
                    key = entry_id(scope, text)
                    fields = {"scope": scope, "text": text, "vector": np.asarray(vector, "<f4").tobytes()}
                    pipe.hset(self._key(key), mapping={**fields, "answer": answer})
                    pipe.pexpire(self._key(key), self._ttl_ms)
                    pipe.zadd(f"{self._prefix}:log", {str(key): now})
                pipe.zremrangebyscore(f"{self._prefix}:log", "-inf", now - self._ttl_ms)
                await pipe.execute()
        except Exception as err:  # any Redis trouble: this replica keeps its own entries
            self._warning.warn(err)

    async def pull(self, index: SemanticIndex) -> list[tuple[str, str, np.ndarray, bytes, float]]:
        """Entries stored since the last pull (by any replica) that ``index`` lacks, with their TTL left."""
        try:
            # a few seconds of overlap: another replica's clock, or a store still in flight
            found = await self._redis.zrangebyscore(
                f"{self._prefix}:log", self._since_ms - 5000, "+inf", withscores=True
            )
            fresh = [(int(m), int(score)) for m, score in found if int(m) not in index]
            if found:
                self._since_ms = max(self._since_ms, max(int(score) for _, score in found))
            if not fresh:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, _ in fresh:
                    pipe.hgetall(self._key(key))
                    pipe.pttl(self._key(key))
                raw = await pipe.execute()
        except Exception as err:
            self._warning.warn(err)
            return []
        return [e for e in map(self._entry, raw[::2], raw[1::2]) if e is not None]

    def _entry(
        self, fields: dict[bytes, bytes], ttl_ms: int
    ) -> tuple[str, str, np.ndarray, bytes, float] | None:
        if not fields or ttl_ms <= 0:
            return None  # expired meanwhile
        vector = np.frombuffer(fields[b"vector"], dtype="<f4")
        if vector.shape != (self._dimensions,):
            return None  # another embedder (its scope differs too): never mixed
        return fields[b"scope"].decode(), fields[b"text"].decode(), vector, fields[b"answer"], ttl_ms / 1000

    async def close(self) -> None:
        await self._redis.aclose()

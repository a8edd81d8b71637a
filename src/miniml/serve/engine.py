"""The request path every task shares: cache → batcher → cache, for each served model.

:class:`ServedModel` holds the version being served (swapped atomically), its batcher and its cache.
:class:`ModelSet` holds every served model and their alias followers, and starts and drains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

from miniml.errors import ConfigError
from miniml.modelfolder import read_info
from miniml.runtime.loaded import LoadedModel
from miniml.runtime.resolve import resolve
from miniml.serve.aliases import AliasFollower, inference_threads, load_served, pin_torch_threads
from miniml.serve.batching import (
    Batcher,
    BatcherClosedError,
    BatchTimeoutError,
    QueueFullError,
    current_worker,
)
from miniml.serve.cache import Cache, build_cache
from miniml.serve.continuous import ContinuousBatcher
from miniml.serve.errors import QueueFull, RequestTimeout, Unavailable
from miniml.serve.metrics import ServeMetrics
from miniml.serve.semantic import Probe, SemanticCache
from miniml.serve.settings import ServeSettings
from miniml.tasks.base import ServingHooks
from miniml.tasks.registry import get_task

log = logging.getLogger("miniml.serve")


class ServedModel:
    """One model name: the version being served, its batcher and its cache."""

    def __init__(
        self,
        model: LoadedModel,
        handler: ServingHooks,
        settings: ServeSettings,
        metrics: ServeMetrics,
        *,
        threads: int,
        label: str | None = None,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.name = label or model.name  # names its batcher and metrics: "NAME:challenger" for a challenger
        self.handler = handler
        # the semantic cache answers tasks whose hooks say what to embed (generation), when configured
        self.semantic = semantic if callable(getattr(handler, "semantic_key", None)) else None
        # model monitoring (drift window, prediction store, rollouts) covers its answers; an alias swap
        # keeps the task (miniml.serve.aliases), so this holds for every version it serves
        self.monitored = get_task(model.task).monitored
        self._current = model
        self._metrics = metrics
        self.cache: Cache[Any] | None = build_cache(settings.cache, handler.codec)
        b = settings.batching
        self.batcher: Batcher[Any, LoadedModel, Any] | ContinuousBatcher
        if handler.route == "generate" and b.continuous:
            self.batcher = ContinuousBatcher(
                lambda: self._current,
                name=self.name,
                max_batch_size=b.max_batch_size,
                queue_size=b.queue_size,
                timeout_s=b.request_timeout_s,
                on_start=partial(pin_torch_threads, threads),
                on_batch=self._observe_batch,
            )
        else:
            self.batcher = Batcher(
                self._run_batch,
                name=self.name,
                max_batch_size=b.max_batch_size,
                max_wait_ms=b.max_wait_ms,
                queue_size=b.queue_size,
                timeout_s=b.request_timeout_s,
                on_start=partial(pin_torch_threads, threads),
                on_batch=self._observe_batch,
                on_expired=metrics.expired_inputs.labels(self.name).inc,
                workers=worker_count(settings, model.task),
            )
        self._hits = metrics.cache_hits.labels(self.name, "exact")
        self._semantic_hits = metrics.cache_hits.labels(self.name, "semantic") if self.semantic else None
        self._misses = metrics.cache_misses.labels(self.name)
        self._batch_size = metrics.batch_size.labels(self.name)
        self._batch_seconds = metrics.batch_latency.labels(self.name)

    @property
    def current(self) -> LoadedModel:
        """The version answering new batches."""
        return self._current

    @property
    def pending(self) -> int:
        return self.batcher.pending

    def swap(self, model: LoadedModel) -> None:
        """Serve ``model`` from the next batch on (a single reference assignment: atomic)."""
        self._current = model
        self._metrics.swaps.labels(self.name).inc()

    def describe(self) -> dict[str, str]:
        m = self._current
        version = "" if m.version is None else str(m.version)
        return {"version": version, "alias": m.alias or "", "task": m.task, "uri": m.uri}

    @property
    def batching(self) -> str | None:
        """How generations are batched: ``continuous``, or ``static (why)``; None for other tasks."""
        if self.handler.route != "generate":
            return None
        if not isinstance(self.batcher, ContinuousBatcher):
            return "static (batching.continuous is false)"
        from miniml.runtime.decoding.steppers import stepper_for

        generator = self._current.predictor
        found = stepper_for(generator.model, int(generator.tokenizer.pad_token_id))
        return f"static ({found})" if isinstance(found, str) else "continuous"

    async def infer(self, items: list[Any]) -> tuple[LoadedModel, list[Any]]:
        """Outputs for ``items`` (cached ones from the caches) and the version that computed them."""
        model = self._current
        cache = self.cache
        if cache is None and self.semantic is None:
            return await self._submit(items)
        keys = [self.handler.cache_key(x) for x in items]
        outputs: list[Any] = [None] * len(items)
        cacheable = [i for i, k in enumerate(keys) if k is not None]
        if cacheable and cache is not None:
            found = await cache.get_many(model.key, [keys[i] for i in cacheable])  # type: ignore[misc]
            for i, value in zip(cacheable, found, strict=True):
                outputs[i] = value
        missing = [i for i, y in enumerate(outputs) if y is None]
        if cache is not None:
            hits = len(items) - len(missing)
            self._hits.inc(hits)
            self._misses.inc(len(cacheable) - hits)
            self._note(items, [i for i in cacheable if outputs[i] is not None], "exact")
        probes = await self._semantic_lookup(model, items, outputs, missing)
        missing = [i for i in missing if outputs[i] is None]
        if not missing:
            return model, outputs
        computed_by, fresh = await self._submit([items[i] for i in missing])
        if len(missing) < len(items) and computed_by.key != model.key:
            # swapped meanwhile: never mix two versions in one answer
            computed_by, outputs = await self._submit(items)
            missing, probes = list(range(len(items))), {}
            self._note(items, missing, "")  # computed after all
        else:
            for i, y in zip(missing, fresh, strict=True):
                outputs[i] = y
        await self._keep(computed_by, keys, outputs, missing, probes)
        return computed_by, outputs

    async def _semantic_lookup(
        self, model: LoadedModel, items: list[Any], outputs: list[Any], missing: list[int]
    ) -> dict[int, Probe]:
        """Answer what the exact cache missed from similar earlier prompts; the probes of the rest."""
        semantic, handler = self.semantic, self.handler
        if semantic is None or not missing:
            return {}
        asked = [(i, k) for i in missing if (k := handler.semantic_key(items[i])) is not None]  # type: ignore[attr-defined]
        if not asked:
            return {}
        try:
            found = await semantic.lookup(
                self.name, [(semantic.scope(model.key, settings), text) for _, (settings, text) in asked]
            )
        except Exception as err:  # the embedder's queue full or timed out: answer without the cache
            log.warning("semantic cache lookup failed, generating instead: %s", err)
            return {}
        probes = {}
        for (i, _), probe in zip(asked, found, strict=True):
            if probe is None:
                continue  # longer than the embedder reads: not in the semantic cache
            entry = probe.match.entry
            if entry is None:
                probes[i] = probe
                continue
            outputs[i] = handler.semantic_answer(items[i], entry.answer)  # type: ignore[attr-defined]
            handler.note_hit(items[i], "semantic", probe.match.similarity)  # type: ignore[attr-defined]
            assert self._semantic_hits is not None
            self._semantic_hits.inc()
        return probes

    async def _keep(
        self,
        computed_by: LoadedModel,
        keys: list[str | None],
        outputs: list[Any],
        computed: list[int],
        probes: dict[int, Probe],
    ) -> None:
        """Store what was computed in the response cache and, for probed prompts, the semantic cache."""
        keep = getattr(self.handler, "cacheable", None)  # e.g. generation: never a cancelled answer
        kept = [i for i in computed if keys[i] is not None and (keep is None or keep(outputs[i]))]
        if kept and self.cache is not None:
            await self.cache.set_many(computed_by.key, [(keys[i], outputs[i]) for i in kept])  # type: ignore[misc]
        stored = [(probes[i], self.handler.codec.dumps(outputs[i])) for i in kept if i in probes]
        if stored and self.semantic is not None:  # probes are scoped by the version that computed them
            await self.semantic.store(stored)

    def _note(self, items: list[Any], answered: list[int], kind: str) -> None:
        note = getattr(self.handler, "note_hit", None)
        if note is not None:
            for i in answered:
                note(items[i], kind)

    async def _submit(self, items: list[Any]) -> tuple[LoadedModel, list[Any]]:
        try:
            return await self.batcher.submit(items)
        except QueueFullError as err:
            raise QueueFull(self.name, err.retry_after) from None
        except BatcherClosedError:
            raise Unavailable("the server is shutting down; retry on another replica") from None
        except BatchTimeoutError:
            raise RequestTimeout(self.batcher.timeout_s) from None

    def _run_batch(self, items: list[Any]) -> tuple[LoadedModel, Any]:
        model = self._current  # read once: the whole batch runs on one version
        return model, self.handler.predict(model.replica(current_worker()), items)

    def _observe_batch(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)

    async def close(self) -> None:
        """Finish queued work, then release the cache."""
        await self.batcher.close()
        if self.cache is not None:
            await self.cache.close()


def load_models(settings: ServeSettings) -> list[tuple[LoadedModel, ServingHooks]]:
    """Resolve, load and warm up every configured model (blocking); fail early with a clear error."""
    if not settings.models:
        raise ConfigError("no model to serve", hint="pass a MODEL_URI or list `models:` in the serve config")
    sources = [resolve(uri) for uri in settings.models]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"two model URIs resolve to the same name among {names}; serve each name once")
    tasks = [read_info(s.path).task for s in sources]
    handlers = [get_task(t).handler(settings.batching) for t in tasks]  # unknown task: before loading
    threads = inference_threads(settings.batching.threads, sum(worker_count(settings, t) for t in tasks))
    return [
        (
            load_served(
                s,
                threads=threads,
                device=settings.device,
                warm_up=h.warm_up,
                workers=worker_count(settings, t),
            ),
            h,
        )
        for s, h, t in zip(sources, handlers, tasks, strict=True)
    ]


def worker_count(settings: ServeSettings, task: str) -> int:
    """Batcher workers (and model replicas) for a model of ``task``: the task decides (a generator runs
    one decoding loop whatever ``batching.workers`` says)."""
    return get_task(task).serve_workers(settings.batching.workers)


class ModelSet:
    """Every served model by name, with their alias followers."""

    def __init__(self, settings: ServeSettings, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self.semantic: SemanticCache | None = None  # set before start when cache.semantic is configured
        self._followers: list[asyncio.Task[None]] = []

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(list(self.models.values()))

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    async def start(self, loaded: list[tuple[LoadedModel, ServingHooks]]) -> None:
        """Start a batcher per model and a follower per aliased model (on the running loop)."""
        total = sum(worker_count(self.settings, m.task) for m, _ in loaded)
        threads = inference_threads(self.settings.batching.threads, total)
        for model, handler in loaded:
            served = ServedModel(
                model, handler, self.settings, self.metrics, threads=threads, semantic=self.semantic
            )
            served.batcher.start()
            self.models[model.name] = served
            if model.alias and self.settings.follow_aliases:
                follower = AliasFollower(
                    served,
                    interval_s=self.settings.alias_poll_s,
                    threads=threads,
                    device=self.settings.device,
                    warm_up=handler.warm_up,
                    workers=worker_count(self.settings, model.task),
                )
                self._followers.append(asyncio.create_task(follower.run(), name=f"follow-{model.name}"))

    async def stop(self) -> None:
        """Stop following aliases, drain every batcher, close caches."""
        for follower in self._followers:
            follower.cancel()
        for follower in self._followers:
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        await asyncio.gather(*(served.close() for served in self.models.values()))

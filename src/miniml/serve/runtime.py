"""Loading served models, following their registry alias, and swapping versions without a failed request.

A model URI is ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (both resolved by the registry) or a model
folder (read directly, so serving a folder never imports MLflow). A model loaded by alias is followed: an
:class:`AliasFollower` asks the registry for the alias' version every ``alias_poll_s`` seconds; when it
moved, the new version is loaded and warmed up on a thread (the event loop keeps serving), then swapped in
with one attribute assignment. Batches in flight finish on the old version, the next batch uses the new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from miniml.errors import ModelError
from miniml.modelfolder import INFO_FILE, ModelInfo, read_info

log = logging.getLogger("miniml.serve")

MODELS_SCHEME = "models:/"


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version, immutable: swapping replaces the whole object."""

    name: str
    uri: str
    version: int | None
    alias: str | None
    path: Path
    info: ModelInfo
    predictor: Any
    key: str = field(default="", compare=False)  # cache namespace: unique per model version
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    replicas: tuple[Any, ...] = field(default=(), compare=False)  # more predictors: one per extra worker

    @property
    def task(self) -> str:
        return self.info.task

    def replica(self, worker: int) -> LoadedModel:
        """This version as seen by batcher worker ``worker``: its own predictor (worker 0: ``predictor``)."""
        if worker == 0 or not self.replicas:
            return self
        return replace(self, predictor=self.replicas[(worker - 1) % len(self.replicas)], replicas=())


@dataclass(frozen=True)
class ModelSource:
    """Where a model URI points: folder, registry name, version and alias."""

    uri: str
    path: Path
    name: str
    version: int | None
    alias: str | None


def resolve(uri: str) -> ModelSource:
    """Resolve a model URI to a folder (registry URIs through ``miniml.registry``)."""
    if uri.startswith(MODELS_SCHEME):
        from miniml.registry.store import resolve_model

        resolved = resolve_model(uri)
        name = resolved.name or read_info(resolved.path).name
        return ModelSource(uri, Path(resolved.path), name, resolved.version, resolved.alias)
    path = Path(uri).expanduser()
    if not path.exists():
        raise ModelError(
            f"model {uri!r} is neither a models:/ URI nor an existing folder",
            hint="pass models:/NAME@ALIAS, models:/NAME/VERSION or a model folder",
        )
    return ModelSource(uri, path.resolve(), read_info(path).name, None, None)


def version_key(source: ModelSource) -> str:
    """A cache namespace unique to the model version (folders: a hash of their ``miniml.json``)."""
    if source.version is not None:
        return f"{source.name}@v{source.version}"
    digest = hashlib.sha256((source.path / INFO_FILE).read_bytes()).hexdigest()[:16]
    return f"{source.name}@{digest}"


def load_model(
    source: ModelSource,
    *,
    threads: int | None,
    device: str | None,
    alias: str | None = None,
    warm_up: Callable[[LoadedModel], None] | None = None,
    workers: int = 1,
) -> LoadedModel:
    """Load the predictor of ``source`` (blocking: call off the event loop) and warm it up.

    With ``workers`` > 1 a classifier is loaded once per batcher worker (``replicas``), each predictor with
    ``threads`` threads; a generator stays single (its batching loop is its own).
    """
    from miniml.inference import load_predictor

    replicas: tuple[Any, ...] = ()
    if read_info(source.path).task in ("seq2seq", "causal_lm"):  # issue 5: a Generator, not a Predictor
        from miniml.serve.generate import load_generator

        predictor: Any = load_generator(source.path, threads=threads, device=device)
    else:
        predictor = load_predictor(source.path, threads=threads, device=device)
        replicas = tuple(
            load_predictor(source.path, threads=threads, device=device) for _ in range(workers - 1)
        )
    model = LoadedModel(
        name=source.name,
        uri=source.uri,
        version=source.version,
        alias=alias or source.alias,
        path=source.path,
        info=predictor.info,
        predictor=predictor,
        key=version_key(source),
        replicas=replicas,
    )
    if warm_up is not None:
        for worker in range(1 + len(replicas)):
            warm_up(model.replica(worker))
    return model


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def inference_threads(configured: int | None, total_workers: int) -> int:
    """Threads per batcher worker: the configured number, else the cores shared among all workers."""
    return configured or max(1, usable_cores() // max(1, total_workers))


def pin_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads on the calling thread (OpenMP settings are per thread)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


class Swappable(Protocol):
    """A served model the follower can read and replace."""

    @property
    def current(self) -> LoadedModel: ...

    def swap(self, model: LoadedModel) -> None: ...


class AliasFollower:
    """Poll the registry for an alias' version; load and swap in a new version when it moves."""

    def __init__(
        self,
        served: Swappable,
        *,
        interval_s: float,
        threads: int | None,
        device: str | None,
        warm_up: Callable[[LoadedModel], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.served = served
        self.workers = workers
        self.interval_s = interval_s
        self.threads = threads
        self.device = device
        self.warm_up = warm_up
        self.failed_version: int | None = None  # not retried until the alias moves again

    async def run(self) -> None:
        """Check forever (until cancelled); a failed check is logged and retried next period."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception as err:
                log.warning("cannot follow alias of %s: %s", self.served.current.uri, err)

    async def check(self) -> bool:
        """Swap in the alias' current version if it changed; return whether it did."""
        current = self.served.current
        if current.alias is None:
            return False
        from miniml.registry.store import get_version

        latest = await asyncio.to_thread(get_version, current.name, current.alias)
        if latest.version in (current.version, self.failed_version):
            return False
        started = time.perf_counter()
        try:
            new = await self._load(current, latest.version)
        except Exception:
            self.failed_version = latest.version  # keep serving the old version; say so once
            raise
        self.served.swap(new)
        log.info(
            "model swapped",
            extra={
                "fields": {
                    "model": current.name,
                    "alias": current.alias,
                    "old_version": current.version,
                    "new_version": new.version,
                    "load_s": round(time.perf_counter() - started, 3),
                }
            },
        )
        return True

    async def _load(self, current: LoadedModel, version: int) -> LoadedModel:
        """Resolve, load and warm up ``version`` on threads; it must be the same task."""
        source = await asyncio.to_thread(resolve, f"{MODELS_SCHEME}{current.name}/{version}")
        new = await asyncio.to_thread(
            load_model,
            source,
            threads=self.threads,
            device=self.device,
            alias=current.alias,
            warm_up=self.warm_up,
            workers=self.workers,
        )
        if new.task != current.task:
            raise ModelError(
                f"{current.name}@{current.alias} moved to a {new.task} model; the server serves "
                f"{current.task} under this name — restart it to change task"
            )
        return new

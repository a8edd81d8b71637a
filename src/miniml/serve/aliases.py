"""Loading served models, following their registry alias, and swapping versions without a failed request.

Model URIs resolve through :func:`miniml.runtime.resolve` and load on their task's runtime
(:func:`miniml.tasks.load_model`), warmed up before they answer. A model loaded by alias is followed: an
:class:`AliasFollower` asks the registry for the alias' version every ``alias_poll_s`` seconds; when it
moved, the new version is loaded and warmed up on a thread (the event loop keeps serving), then swapped in
with one attribute assignment. Batches in flight finish on the old version, the next batch uses the new one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Protocol

from miniml.errors import ModelError
from miniml.registry.uris import SCHEME as MODELS_SCHEME
from miniml.registry.uris import ModelSource
from miniml.runtime.loaded import LoadedModel
from miniml.runtime.resolve import resolve
from miniml.tasks.registry import get_task, load_model

log = logging.getLogger("miniml.serve")


def load_served(
    source: ModelSource,
    *,
    threads: int | None,
    device: str | None,
    alias: str | None = None,
    warm_up: Callable[[LoadedModel], None] | None = None,
    workers: int = 1,
) -> LoadedModel:
    """Load ``source`` on its task's runtime (blocking: call off the event loop) and warm every replica up.

    With ``workers`` > 1 the model is loaded once per batcher worker (``replicas``), each with ``threads``
    threads; the task says how many workers it runs (``Task.serve_workers``).
    """
    model = load_model(source, device=device, threads=threads, alias=alias, replicas=workers - 1)
    if warm_up is not None:
        for worker in range(workers):
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
            load_served,
            source,
            threads=self.threads,
            device=self.device,
            alias=current.alias,
            warm_up=self.warm_up,
            workers=self.workers,
        )
        if get_task(new.info.task) is not get_task(current.info.task):
            raise ModelError(
                f"{current.name}@{current.alias} moved to a {new.task} model; the server serves "
                f"{current.task} under this name — restart it to change task"
            )
        return new

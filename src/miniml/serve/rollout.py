"""Canary and shadow rollouts: a challenger version next to a served name (``routing:`` in the serve config).

``routing: {NAME: {challenger: models:/NAME@challenger, canary: 0.1}}`` loads the challenger as a second
served model of NAME (its own batcher, cache namespace and alias follower) and lets it answer a share of
the requests (:class:`~miniml.monitor.canary.CanaryRouter`; the answer's ``version`` says which one
answered). ``shadow: true`` instead answers every request from the champion and then sends the same inputs
to the challenger in the background: its answers are compared with the champion's (agreement), timed, kept
for feedback (its online accuracy) and watched for drift, never returned.

Every request to a name with a challenger is counted in ``miniml_rollout_requests_total{model,version,role}``
and its inference time in ``miniml_rollout_latency_seconds{model,role}`` (names without one: the server's own
request metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from miniml.errors import ConfigError, MinimlError
from miniml.modelfolder import read_info
from miniml.monitor.canary import CHALLENGER, CHAMPION, Agreement, CanaryRouter
from miniml.monitor.predictions import Answer
from miniml.monitor.settings import RoutingSettings
from miniml.runtime.loaded import LoadedModel
from miniml.runtime.resolve import resolve
from miniml.serve.aliases import AliasFollower, inference_threads, load_served
from miniml.serve.engine import ModelSet, ServedModel, worker_count
from miniml.serve.errors import HTTPProblem
from miniml.serve.metrics import LATENCY_BUCKETS, ServeMetrics
from miniml.serve.monitoring import Monitoring
from miniml.serve.settings import ServeSettings
from miniml.tasks.base import ServingHooks
from miniml.tasks.registry import get_task

log = logging.getLogger("miniml.serve")
Loaded = tuple[LoadedModel, ServingHooks]


def load_challengers(settings: ServeSettings) -> dict[str, Loaded]:
    """Resolve, load and warm up every ``routing`` challenger (blocking); a clear error on a bad one."""
    loaded: dict[str, Loaded] = {}
    threads = inference_threads(
        settings.batching.threads, max(1, len(settings.models) + len(settings.routing))
    )
    for name, routing in settings.routing.items():
        source = resolve(routing.challenger)
        if source.name != name:
            raise ConfigError(
                f"routing.{name}.challenger {routing.challenger!r} is a model named {source.name!r}",
                hint=f"a challenger must be a version of {name}, e.g. models:/{name}@challenger",
            )
        task = get_task(read_info(source.path).task)
        if not task.monitored:
            raise ConfigError(
                f"routing.{name}: canary and shadow rollouts serve classifiers, not {task.name} models"
            )
        handler = task.handler(settings.batching)
        model = load_served(
            source, threads=threads, device=settings.device, warm_up=handler.warm_up, workers=1
        )
        loaded[name] = (model, handler)
    return loaded


@dataclass
class Rollout:
    """One served name with a challenger."""

    name: str
    settings: RoutingSettings
    challenger: ServedModel
    router: CanaryRouter
    agreement: Agreement


class Rollouts:
    """Every rollout of the server, the routing decision and the shadow requests."""

    def __init__(self, settings: ServeSettings, metrics: ServeMetrics, monitoring: Monitoring) -> None:
        self.settings = settings
        self.metrics = metrics
        self.monitoring = monitoring
        self.rollouts: dict[str, Rollout] = {}
        self._followers: list[asyncio.Task[None]] = []
        self._shadows: set[asyncio.Task[None]] = set()
        r = metrics.registry
        self.requests = Counter(
            "miniml_rollout_requests",
            "Requests per answering version and role (champion, challenger).",
            ["model", "version", "role"],
            registry=r,
        )
        self.latency = Histogram(
            "miniml_rollout_latency_seconds",
            "Inference time per role (shadow requests included).",
            ["model", "role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_errors = Counter(
            "miniml_shadow_errors", "Shadow requests the challenger could not answer.", ["model"], registry=r
        )
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}

    def start(self, models: ModelSet, loaded: dict[str, Loaded]) -> None:
        """Create the challengers' served models (batchers) and alias followers (on the running loop)."""
        for name, routing in self.settings.routing.items():
            if models.get(name) is None:
                raise ConfigError(f"routing names {name!r}, which is not served", hint="list it in models:")
            model, handler = loaded[name]
            threads = inference_threads(self.settings.batching.threads, len(models.models) + len(loaded))
            served = ServedModel(
                model, handler, self.settings, self.metrics, threads=threads, label=f"{name}:challenger"
            )
            served.batcher.start()
            self.rollouts[name] = Rollout(
                name, routing, served, CanaryRouter(routing.canary, routing.sticky), Agreement()
            )
            if routing.shadow:
                self.monitoring.agreement[name] = self.rollouts[name].agreement
            self.monitoring.prepare(model, CHALLENGER)
            if model.alias and self.settings.follow_aliases:
                follower = AliasFollower(
                    served,
                    interval_s=self.settings.alias_poll_s,
                    threads=threads,
                    device=self.settings.device,
                    warm_up=handler.warm_up,
                    workers=worker_count(self.settings, model.task),
                )
                self._followers.append(asyncio.create_task(follower.run(), name=f"follow-{name}-challenger"))

    def pick(
        self, name: str, champion: ServedModel, request_id: str, key: str | None
    ) -> tuple[str, ServedModel]:
        """Which role answers this request, and its served model."""
        rollout = self.rollouts.get(name)
        if rollout is None or rollout.settings.shadow:
            return CHAMPION, champion
        if rollout.router.role(request_id, key) == CHALLENGER:
            return CHALLENGER, rollout.challenger
        return CHAMPION, champion

    def count(self, name: str, role: str, model: LoadedModel, seconds: float) -> None:
        """Count an answered request and its inference time (hot path: cached label children)."""
        version = "" if model.version is None else str(model.version)
        child = self._request_children.get((name, version, role))
        if child is None:
            child = self._request_children[(name, version, role)] = self.requests.labels(name, version, role)
        child.inc()
        hist = self._latency_children.get((name, role))
        if hist is None:
            hist = self._latency_children[(name, role)] = self.latency.labels(name, role)
        hist.observe(seconds)

    def after_answer(self, name: str, request_id: str, items: list[str], labels: list[str]) -> None:
        """In shadow mode, run the challenger on the same inputs in the background."""
        rollout = self.rollouts.get(name)
        if rollout is None or not rollout.settings.shadow:
            return
        job = asyncio.get_running_loop().create_task(self._shadow(rollout, request_id, items, labels))
        self._shadows.add(job)
        job.add_done_callback(self._shadows.discard)

    async def _shadow(self, rollout: Rollout, request_id: str, items: list[str], labels: list[str]) -> None:
        started = time.perf_counter()
        try:
            model, outputs = await rollout.challenger.infer(items)
        except (HTTPProblem, MinimlError) as err:
            self.shadow_errors.labels(rollout.name).inc()
            log.debug("shadow request failed: %s", err)
            return
        self.count(rollout.name, CHALLENGER, model, time.perf_counter() - started)
        shadow_labels = rollout.challenger.handler.top_labels(model, outputs)
        rollout.agreement.add(labels, shadow_labels)
        if self.monitoring.drift.enabled:
            self.monitoring.monitor(model, CHALLENGER).record(items, outputs)
        await self.monitoring.add_answer(
            rollout.name, request_id, CHALLENGER, Answer(model.version, shadow_labels)
        )

    def challenger_of(self, name: str) -> ServedModel | None:
        rollout = self.rollouts.get(name)
        return None if rollout is None else rollout.challenger

    async def stop(self) -> None:
        """Finish shadow requests, stop followers, drain the challengers' batchers."""
        if self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)
        for job in self._followers:
            job.cancel()
        for job in self._followers:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await asyncio.gather(*(r.challenger.close() for r in self.rollouts.values()))

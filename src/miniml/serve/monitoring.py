"""Model monitoring inside the server: drift windows, predictions awaiting feedback, online quality.

:class:`Monitoring` is built once per app. The predict path calls :meth:`Monitoring.observe` after each
answer: one ``deque.append`` per input into the answering version's drift window and one put into the
prediction store (see :mod:`miniml.monitor.window` and :mod:`miniml.monitor.predictions` for why that is all).
Verdicts are computed off the event loop when ``GET /v1/models/{name}/drift`` or ``GET /metrics`` asks
(:meth:`refresh`), and exported at scrape time by :class:`MonitorCollector`.

Every served version has its own window, keyed by its cache key, with its reference profile
(``reference.json`` in its folder, else ``MINIML_HOME/monitor/...``: ``miniml.monitor.profile.find_profile``);
``role`` says whether it is the champion or the challenger of its name (:mod:`miniml.serve.rollout`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from miniml.errors import MinimlError
from miniml.monitor.canary import Agreement
from miniml.monitor.embedding import embedder_for
from miniml.monitor.predictions import Answer, PredictionRecord, PredictionStore
from miniml.monitor.profile import ReferenceProfile, find_profile, read_profile
from miniml.monitor.quality import FeedbackLog, OnlineQuality
from miniml.monitor.settings import build_store
from miniml.monitor.window import DriftMonitor, DriftReport
from miniml.paths import home
from miniml.serve.settings import ServeSettings
from miniml.tasks.registry import get_task

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel

log = logging.getLogger("miniml.serve")


def version_label(model: LoadedModel) -> str:
    return "" if model.version is None else str(model.version)


class Monitoring:
    """Drift monitors, the prediction store, online quality and shadow agreement of every served name."""

    def __init__(self, settings: ServeSettings) -> None:
        self.drift = settings.monitor.drift
        self.feedback = settings.monitor.feedback
        self.store: PredictionStore | None = build_store(self.feedback) if self.feedback.enabled else None
        self.monitors: dict[tuple[str, str], DriftMonitor] = {}  # (version key, role) → monitor
        self.current: dict[tuple[str, str], LoadedModel] = {}  # (name, role) → version serving now
        self.quality: dict[tuple[str, str, str], OnlineQuality] = {}  # (name, role, version)
        self.agreement: dict[str, Agreement] = {}
        self._logs: dict[str, FeedbackLog] = {}

    # ------------------------------------------------------------------ the request path

    def observe(
        self,
        name: str,
        role: str,
        model: LoadedModel,
        request_id: str,
        key: str | None,
        items: list[str],
        outputs: list[Any],
        labels: list[str],
    ) -> None:
        """Record an answer: drift window (classifiers) and prediction store."""
        if self.current.get((name, role)) is not model:
            self.current[(name, role)] = model
        if self.drift.enabled:
            self.monitor(model, role).record(items, outputs)
        if self.store is not None:
            record = PredictionRecord(
                request_id,
                name,
                key,
                items if self.feedback.keep_inputs else None,
                {role: Answer(model.version, labels)},
            )
            self.store.put(record)

    async def add_answer(self, name: str, request_id: str, role: str, answer: Answer) -> None:
        """Add another role's answer (shadow) to a stored prediction."""
        if self.store is None:
            return
        record = await self.store.get(request_id)
        if record is not None and record.model == name:
            record.answers[role] = answer
            self.store.put(record)

    # ------------------------------------------------------------------ drift

    def monitor(self, model: LoadedModel, role: str) -> DriftMonitor:
        """The drift monitor of a served version (created, with its profile, on first use)."""
        found = self.monitors.get((model.key, role))
        if found is None:
            found = self.monitors[(model.key, role)] = self._new_monitor(model, role)
        return found

    def _new_monitor(self, model: LoadedModel, role: str) -> DriftMonitor:
        profile, reason = self._profile(model)
        d = self.drift
        return DriftMonitor(
            profile,
            model=model.name,
            version=model.version,
            role=role,
            size=d.window,
            max_age_s=d.max_age_s,
            min_inputs=d.min_inputs,
            min_interval_s=d.min_interval_s,
            thresholds=d.thresholds,
            embed=embedder_for(model.predictor) if profile is not None and profile.embeddings else None,
            embedding_rows=d.embedding_rows,
            embedding_interval_s=d.embedding_interval_s,
            missing_reason=reason,
        )

    def _profile(self, model: LoadedModel) -> tuple[ReferenceProfile | None, str]:
        if not get_task(model.task).monitored:
            return None, f"drift monitoring covers classifiers; {model.name} is a {model.task} model"
        path = find_profile(model.path, model.name, model.version)
        if path is None:
            hint = f"run `miniml monitor profile {model.uri}`"
            log.warning(
                "no reference profile for %s v%s: no drift verdicts (%s)", model.name, model.version, hint
            )
            return None, f"this model version has no reference profile; {hint}"
        try:
            return read_profile(path), ""
        except MinimlError as err:
            log.warning("cannot read the reference profile of %s: %s", model.name, err)
            return None, str(err)

    def prepare(self, model: LoadedModel, role: str) -> None:
        """Load a version's profile before traffic arrives (startup, alias swaps)."""
        self.current[(model.name, role)] = model
        if self.drift.enabled:
            self.monitor(model, role)

    def serving(self, name: str) -> list[tuple[str, DriftMonitor]]:
        """(role, monitor) of the versions serving ``name`` now."""
        return [
            (role, self.monitor(model, role))
            for (n, role), model in sorted(self.current.items())
            if n == name and self.drift.enabled
        ]

    def reports(self) -> list[DriftReport]:
        """The latest verdict of every serving version (computed if stale; blocking)."""
        return [m.report() for name in {n for n, _ in self.current} for _, m in self.serving(name)]

    async def refresh(self) -> None:
        """Bring every serving version's verdict up to date, off the event loop."""
        if self.drift.enabled and self.current:
            await asyncio.to_thread(self.reports)

    # ------------------------------------------------------------------ quality

    def quality_of(self, name: str, role: str, version: int | None) -> OnlineQuality:
        key = (name, role, "" if version is None else str(version))
        found = self.quality.get(key)
        if found is None:
            found = self.quality[key] = OnlineQuality(self.feedback.window)
        return found

    def feedback_log(self, name: str) -> FeedbackLog:
        found = self._logs.get(name)
        if found is None:
            path = str(self.feedback.log or home() / "feedback" / "{name}.jsonl")
            found = self._logs[name] = FeedbackLog(Path(path.replace("{name}", name)))
        return found

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


class MonitorCollector(Collector):
    """Drift, online quality and shadow agreement gauges, read at scrape time."""

    def __init__(self, monitoring: Monitoring) -> None:
        self.m = monitoring

    def collect(self) -> Iterable[Metric]:
        yield from self._drift()
        yield from self._quality()
        yield from self._agreement()

    def _drift(self) -> Iterable[Metric]:
        labels = ["model", "version", "role"]
        score = GaugeMetricFamily(
            "miniml_drift_score",
            "Drift statistic per signal (see /v1/models/NAME/drift).",
            labels=[*labels, "signal"],
        )
        threshold = GaugeMetricFamily(
            "miniml_drift_threshold", "Threshold of each drift signal.", labels=[*labels, "signal"]
        )
        detected = GaugeMetricFamily(
            "miniml_drift_detected", "1 when any signal exceeds its threshold.", labels=labels
        )
        size = GaugeMetricFamily("miniml_drift_window_inputs", "Inputs in the drift window.", labels=labels)
        for report in (m.last for name in {n for n, _ in self.m.current} for _, m in self.m.serving(name)):
            if report is None:
                continue
            base = [report.model, "" if report.version is None else str(report.version), report.role]
            detected.add_metric(base, float(report.drift_detected))
            size.add_metric(base, report.window.size)
            for signal, result in report.signals.items():
                score.add_metric([*base, signal], result.value)
                threshold.add_metric([*base, signal], result.threshold)
        yield from (score, threshold, detected, size)

    def _quality(self) -> Iterable[Metric]:
        labels = ["model", "version", "role"]
        accuracy = GaugeMetricFamily(
            "miniml_online_accuracy", "Accuracy over the feedback window.", labels=labels
        )
        f1 = GaugeMetricFamily("miniml_online_macro_f1", "Macro-F1 over the feedback window.", labels=labels)
        count = CounterMetricFamily("miniml_feedback", "Labelled answers received.", labels=labels)
        for (name, role, version), quality in list(self.m.quality.items()):
            s = quality.summary()
            count.add_metric([name, version, role], s.count)
            if s.accuracy is not None and s.macro_f1 is not None:
                accuracy.add_metric([name, version, role], s.accuracy)
                f1.add_metric([name, version, role], s.macro_f1)
        yield from (accuracy, f1, count)

    def _agreement(self) -> Iterable[Metric]:
        rate = GaugeMetricFamily(
            "miniml_shadow_agreement", "Share of inputs where the shadow challenger agreed.", labels=["model"]
        )
        compared = CounterMetricFamily(
            "miniml_shadow_compared", "Inputs answered by both champion and shadow.", labels=["model"]
        )
        for name, agreement in list(self.m.agreement.items()):
            compared.add_metric([name], agreement.compared)
            if agreement.rate is not None:
                rate.add_metric([name], agreement.rate)
        yield from (rate, compared)

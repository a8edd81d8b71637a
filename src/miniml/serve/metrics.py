"""Prometheus metrics of the server (``GET /metrics``), one registry per app.

Hot-path counters keep their labelled children in dicts, so a request costs a dict lookup and an ``inc``
instead of ``labels()``'s lock and validation. Queue depth and model versions are read from the live
runtime at scrape time (a collector), so the request path never updates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from miniml.serve.listener import accept_queue

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIMILARITY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServedModelView(Protocol):
    """What the collector reads from each served model, as label strings ("" when absent)."""

    @property
    def name(self) -> str: ...

    @property
    def pending(self) -> int: ...

    def describe(self) -> dict[str, str]:
        """``version``, ``alias``, ``task``, ``uri`` of the model being served now."""
        ...


class RuntimeCollector(Collector):
    """Queue depth and model version info, read at scrape time."""

    def __init__(self, models: Callable[[], Iterable[ServedModelView]]) -> None:
        self._models = models

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("miniml_queue_depth", "Inputs waiting for a batch.", labels=["model"])
        info = GaugeMetricFamily(
            "miniml_model_info",
            "The model version being served (value 1).",
            labels=["model", "version", "alias", "task", "uri"],
        )
        version = GaugeMetricFamily(
            "miniml_model_version", "Registry version served (0 for a folder).", labels=["model"]
        )
        for m in self._models():
            d = m.describe()
            depth.add_metric([m.name], m.pending)
            info.add_metric([m.name, d["version"], d["alias"], d["task"], d["uri"]], 1)
            version.add_metric([m.name], float(d["version"]) if d["version"].isdigit() else 0.0)
        yield depth
        yield info
        yield version


class ConnectionCollector(Collector):
    """Open connections and the listen socket's accept queue, read at scrape time."""

    def __init__(self, open_connections: Callable[[], int], listener: Callable[[], Any]) -> None:
        self._open = open_connections
        self._listener = listener

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("miniml_open_connections", "Open HTTP connections.", value=self._open())
        sock = self._listener()
        queue = accept_queue(sock) if sock is not None else None
        if queue is not None:
            yield GaugeMetricFamily(
                "miniml_listen_queue_depth",
                "Connections the kernel completed that the server has not accepted yet.",
                value=queue[0],
            )
            yield GaugeMetricFamily(
                "miniml_listen_queue_limit", "The accept queue's limit (effective backlog).", value=queue[1]
            )


class ConstantLabels:
    """A registry view that adds the same labels to every sample (e.g. ``replica``), at scrape time."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self.registry, self.labels = registry, labels

    def collect(self) -> Iterable[Metric]:
        for metric in self.registry.collect():
            metric.samples = [s._replace(labels={**self.labels, **s.labels}) for s in metric.samples]
            yield metric


class ServeMetrics:
    """Every series the server exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "miniml_requests", "HTTP requests.", ["route", "method", "status", "model"], registry=r
        )
        self.latency = Histogram(
            "miniml_request_duration_seconds",
            "HTTP request latency.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "miniml_batch_size", "Inputs per forward pass.", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_latency = Histogram(
            "miniml_batch_duration_seconds",
            "Time of one forward pass.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "miniml_cache_hits",
            "Inputs answered from the cache: exact (same input) or semantic (a similar prompt).",
            ["model", "kind"],
            registry=r,
        )
        self.semantic_similarity = Histogram(
            "miniml_semantic_similarity",
            "Best cosine similarity found by each semantic-cache lookup.",
            ["model"],
            buckets=SIMILARITY_BUCKETS,
            registry=r,
        )
        self.semantic_lookup = Histogram(
            "miniml_semantic_lookup_duration_seconds",
            "Semantic-cache lookups: embedding the prompts and searching the index.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.semantic_guarded = Counter(
            "miniml_semantic_guarded",
            "Semantic-cache candidates above the threshold turned down by the guard (values disagree).",
            ["model"],
            registry=r,
        )
        self.cache_misses = Counter("miniml_cache_misses", "Inputs not in the cache.", ["model"], registry=r)
        self.rate_limited = Counter(
            "miniml_rate_limited", "Requests refused by a rate limit.", ["key", "budget"], registry=r
        )
        self.predictions = Counter(
            "miniml_predictions", "Predicted labels (top-1).", ["model", "label"], registry=r
        )
        self.expired_inputs = Counter(
            "miniml_expired_inputs",
            "Inputs dropped before their batch ran: their request had already timed out (504).",
            ["model"],
            registry=r,
        )
        self.swaps = Counter("miniml_model_swaps", "Alias moves followed by a reload.", ["model"], registry=r)
        self.generated_tokens = Counter(
            "miniml_generated_tokens", "Tokens generated (seq2seq / causal_lm).", ["model"], registry=r
        )
        self.time_to_first_token = Histogram(
            "miniml_time_to_first_token_seconds",
            "From a generation request's arrival to its first generated text.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused_connections = Counter(
            "miniml_refused_connections",
            "Connections answered by the connection layer (431, 408, 503 over capacity) or closed idle.",
            ["reason"],
            registry=r,
        )
        self._listener: Any = None
        self._constant: dict[str, str] = {}
        self._request_children: dict[tuple[str, str, str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._prediction_children: dict[tuple[str, str], Any] = {}

    def watch_runtime(self, models: Callable[[], Iterable[ServedModelView]]) -> None:
        """Export queue depth and model info of the served models."""
        self.registry.register(RuntimeCollector(models))

    def watch_connections(self, stats: Any) -> None:
        """Export the open connections of ``stats`` (a ``ConnectionStats``) and, once known, the queue."""
        self.registry.register(ConnectionCollector(lambda: stats.open, lambda: self._listener))

    def watch_listener(self, sock: Any) -> None:
        """Export the accept queue of the listening socket ``sock``."""
        self._listener = sock

    def count_refusal(self, reason: str) -> None:
        self.refused_connections.labels(reason).inc()

    def observe_request(self, route: str, method: str, status: int, model: str, seconds: float) -> None:
        """Count one finished HTTP request and its latency."""
        key = (route, method, str(status), model)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()
        lkey = (route, model)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.latency.labels(*lkey)
        hist.observe(seconds)

    def count_predictions(self, model: str, labels: Iterable[str]) -> None:
        """Count served top-1 labels of one model."""
        children = self._prediction_children
        for label in labels:
            child = children.get((model, label))
            if child is None:
                child = children[(model, label)] = self.predictions.labels(model, label)
            child.inc()

    def observe_generation(self, model: str, tokens: int, first_token_s: Iterable[float]) -> None:
        """Count generated tokens and record each answer's time to first token."""
        self.generated_tokens.labels(model).inc(tokens)
        hist = self.time_to_first_token.labels(model)
        for seconds in first_token_s:
            hist.observe(seconds)

    def label_every_series(self, name: str, value: str) -> None:
        """Add ``name="value"`` to every exported sample (a Ray Serve replica adds ``replica``)."""
        self._constant[name] = value

    def observe_semantic(self, model: str, similarity: float, seconds: float, guarded: bool) -> None:
        """One semantic-cache lookup: its best similarity, its time, a guard refusal."""
        self.semantic_similarity.labels(model).observe(similarity)
        self.semantic_lookup.labels(model).observe(seconds)
        if guarded:
            self.semantic_guarded.labels(model).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        if self._constant:
            return generate_latest(ConstantLabels(self.registry, self._constant))
        return generate_latest(self.registry)

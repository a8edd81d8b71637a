"""The union of several replicas' metrics (one HELP/TYPE per family, every replica's series) and the replica
board's bookkeeping (who is live, what each said last, stale replicas dropped)."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from miniml.backends.ray.board import ReplicaBoard
from miniml.serve.metrics import ServeMetrics
from miniml.serve.peers import merge_expositions


def replica_text(replica: str, requests: int) -> str:
    metrics = ServeMetrics()
    metrics.label_every_series("replica", replica)
    for _ in range(requests):
        metrics.observe_request("/v1/models/{name}/predict", "POST", 200, "toy", 0.01)
    metrics.count_predictions("toy", ["sv"] * requests)
    return metrics.render().decode()


def test_the_union_parses_with_one_family_per_name_and_every_replicas_series() -> None:
    merged = merge_expositions([replica_text("a", 3), replica_text("b", 5), replica_text("a", 9)])
    families = list(text_string_to_metric_families(merged))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names  # a family split in two would be refused by Prometheus
    assert merged.count("# TYPE miniml_requests_total counter") == 1
    requests = next(f for f in families if f.name == "miniml_requests")
    totals = {s.labels["replica"]: s.value for s in requests.samples if s.name == "miniml_requests_total"}
    assert totals == {"a": 3.0, "b": 5.0}  # a series given twice keeps its first sample
    latency = next(f for f in families if f.name == "miniml_request_duration_seconds")
    counts = {s.labels["replica"]: s.value for s in latency.samples if s.name.endswith("_count")}
    assert counts == {"a": 3.0, "b": 5.0}
    series = [line.rsplit(" ", 1)[0] for line in merged.splitlines() if not line.startswith("#")]
    assert len(series) == len(set(series))


def test_the_union_of_one_text_is_that_text() -> None:
    text = replica_text("a", 2)
    assert merge_expositions([text]) == text
    assert merge_expositions([]) == ""


def test_the_board_keeps_each_replicas_newest_report_and_drops_silent_ones() -> None:
    board = ReplicaBoard(stale_s=0.3)
    assert board.exchange("a", "loading", None, 1.0, False) == []
    board.exchange("b", "ready", "text of b", 1.0, False)
    board.exchange("a", "ready", "text of a", 2.0, False)
    rows = board.exchange("b", "ready", None, 2.0, True)  # None keeps b's last text; the caller comes first
    assert [(r, s, t) for r, s, t, _ in rows] == [("b", "ready", "text of b"), ("a", "ready", "text of a")]
    board.exchange("a", "loading", "older text of a", 1.5, False)  # overtaken on its way: ignored
    assert board.exchange("b", "ready", None, 3.0, True)[1][1:3] == ("ready", "text of a")
    board.leave("b")
    assert [r[0] for r in board.exchange("a", "ready", None, 3.0, True)] == ["a"]
    board.exchange("c", "ready", "", 1.0, False)
    time.sleep(0.4)  # c stays silent past the bound (killed): dropped at the next exchange
    assert [r[0] for r in board.exchange("a", "draining", None, 4.0, True)] == ["a"]

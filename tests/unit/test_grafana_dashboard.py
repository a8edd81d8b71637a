"""deploy/grafana/miniml.json works for both backends: every panel aggregates its series into what the panel
shows, never per ``replica`` (Ray Serve) or per scrape target, so the same queries serve one local server,
several pods and Ray Serve's replicas (whose series carry a ``replica`` label)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "miniml.json"
AGGREGATED = re.compile(r"^(histogram_quantile\(\s*[\d.]+,\s*)?(sum|max|min|avg)\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def test_every_panel_aggregates_across_replicas() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 18
    for expr in exprs:
        assert AGGREGATED.match(expr), f"not aggregated, one line per replica: {expr}"
        for labels in GROUPING.findall(expr):
            grouped = {label.strip() for label in labels.split(",")}
            assert not grouped & {"replica", "instance", "pod"}, expr

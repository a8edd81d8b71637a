"""How registry entries look on a terminal (rich tables) and in scripts (JSON-able dicts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from miniml.registry.promote import GATE_TAG, PromotionResult
from miniml.registry.store import ModelVersion, RegisteredModelSummary

KEY_METRICS = ("macro_f1", "accuracy", "rougeL", "exact_match", "loss")


def key_metric(metrics: Mapping[str, float], preferred: str | None = None) -> tuple[str, float] | None:
    """The metric worth showing first: the gate's, else a well-known one, else the first by name."""
    for name in (preferred, *KEY_METRICS, *sorted(metrics)):
        if name and name in metrics:
            return name, metrics[name]
    return None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def summary_dict(model: RegisteredModelSummary) -> dict[str, Any]:
    return {
        "name": model.name,
        "latest_version": model.latest_version,
        "aliases": dict(model.aliases),
        "task": model.task,
        "metrics": dict(model.metrics),
        "updated_at": model.updated_at.isoformat() if model.updated_at else None,
    }


def version_dict(version: ModelVersion) -> dict[str, Any]:
    info = version.info
    return {
        "name": version.name,
        "version": version.version,
        "uri": version.uri,
        "aliases": list(version.aliases),
        "task": info.task if info else version.tags.get("task"),
        "metrics": dict(info.metrics) if info else {},
        "dataset": dict(info.dataset) if info else {},
        "base_model": info.base_model if info else version.tags.get("base_model"),
        "run_id": version.run_id,
        "source": version.source,
        "created_at": version.created_at.isoformat(),
    }


def models_table(models: Sequence[RegisteredModelSummary]) -> Table:
    table = Table(title="registered models", title_justify="left")
    for column in ("name", "latest", "aliases", "task", "key metric (latest)"):
        table.add_column(column, no_wrap=column != "aliases")
    for model in models:
        aliases = ", ".join(f"{a}→v{v}" for a, v in sorted(model.aliases.items())) or "-"
        shown = key_metric(model.metrics, model.tags.get(GATE_TAG + "metric"))
        table.add_row(
            model.name,
            f"v{model.latest_version}" if model.latest_version else "-",
            aliases,
            model.task or "-",
            f"{shown[0]} {shown[1]:.4f}" if shown else "-",
        )
    return table


def versions_table(name: str, versions: Sequence[ModelVersion]) -> Table:
    table = Table(title=f"{name}: {len(versions)} version(s)", title_justify="left")
    for column in ("version", "aliases", "metrics", "dataset", "run id", "created"):
        table.add_column(column, no_wrap=column in {"version", "run id", "created"})
    for v in reversed(versions):
        metrics = dict(v.info.metrics) if v.info else {}
        shown = [f"{k} {metrics[k]:.4f}" for k in KEY_METRICS if k in metrics] or [
            f"{k} {val:.4f}" for k, val in sorted(metrics.items())[:3]
        ]
        dataset = v.info.dataset if v.info else {}
        table.add_row(
            f"v{v.version}",
            ", ".join(v.aliases) or "-",
            ", ".join(shown) or "-",
            f"{dataset.get('name', '-')} {dataset.get('fingerprint', v.tags.get('dataset.fingerprint', ''))}",
            v.run_id or "-",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def promotion_message(result: PromotionResult) -> str:
    """One line with both figures: what moved (or not) and why."""
    figures = (
        f"{result.metric}: candidate v{result.version} {_fmt(result.candidate_score)}"
        f" vs {result.alias} "
        + (f"v{result.champion_version} {_fmt(result.champion_score)}" if result.champion_version else "none")
    )
    if result.promoted:
        return f"{result.name} v{result.version} is now {result.alias} ({figures}; {result.reason})"
    return (
        f"not promoted: {result.name} v{result.version} does not beat {result.alias} by more than"
        f" {result.margin:g} ({figures}); use --force to promote anyway"
    )

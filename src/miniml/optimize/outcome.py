"""What every optimize path shares: the rows quality is compared on, the output folder, lineage, the
quality gate, tracking and registration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import miniml.paths as paths
from miniml.data.dataset import open_dataset
from miniml.errors import ConfigError, MinimlError
from miniml.modelfolder import ModelInfo, read_info, write_info
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.report import write_report
from miniml.registry.uris import ModelSource

WEIGHTS_FILE = "model.safetensors"


class QualityGateError(MinimlError):
    """The optimized model lost more quality than allowed; it was not registered."""


@dataclass
class OptimizeResult:
    """Where the optimized model is, what it was registered as, and the comparison report."""

    folder: Path
    report: dict[str, Any]
    name: str
    version: int | None  # None when not registered (dry_run)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version is not None else str(self.folder)


@dataclass
class EvalData:
    ref: str
    texts: list[str]
    targets: list[str]
    frame: Any = None  # the rows themselves (tasks that score with their own evaluation)


def eval_frame(info: ModelInfo, cfg: OptimizeConfig) -> tuple[str, Any]:
    """(dataset ref, the rows of ``cfg.split`` the comparison runs on, at most ``eval_limit``)."""
    ref = cfg.dataset
    if ref is None and info.dataset.get("name"):
        fp = info.dataset.get("fingerprint")
        ref = f"{info.dataset['name']}/{fp}" if fp else str(info.dataset["name"])
    if ref is None:
        raise ConfigError(
            f"model {info.name} records no dataset to compare quality on",
            hint="pass --dataset NAME_OR_FOLDER",
        )
    frame = open_dataset(ref).split(cfg.split)
    if cfg.measure.eval_limit is not None:
        frame = frame.head(cfg.measure.eval_limit)
    return ref, frame


def output_folder(cfg: OptimizeConfig, name: str) -> Path:
    if cfg.output is not None:
        return Path(cfg.output).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return paths.runs_dir() / "optimize" / f"{name}-{stamp}"


def lineage(
    parent_uri: str,
    resolved: ModelSource,
    info: ModelInfo,
    steps: list[dict[str, Any]],
    parity: dict[str, Any],
) -> dict[str, Any]:
    parent = {"uri": parent_uri, "name": resolved.name or info.name, "version": resolved.version}
    if resolved.version is None:
        parent["path"] = str(resolved.path)
    return {"parent": parent, "steps": steps, "parity": parity, "parent_lineage": info.lineage or None}


def finish_folder(folder: Path, report: dict[str, Any]) -> None:
    """Record parity and measured quality in the new folder's ``miniml.json`` and write the report there."""
    info = read_info(folder)
    info.lineage["parity"] = report["parity"]
    info.metrics = {
        f"{report['split']}_{k}": v for k, v in report["optimized"]["quality"].items() if k != "examples"
    }
    write_report(folder, report)
    write_info(folder, info)  # last: the manifest covers the report too


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {
        "quality_drop": report["quality_drop"],
        **{f"parity_{k}": v for k, v in report["parity"].items() if isinstance(v, float)},
    }
    for side in ("parent", "optimized"):
        part = report[side]
        out[f"{side}_size_bytes"] = part["size_bytes"]
        out.update({f"{side}_{k}": v for k, v in part["quality"].items()})
        for batch, stats in part["latency"].items():
            out.update({f"{side}_b{batch}_{k}": v for k, v in stats.items()})
    out.update({f"ratio_{k}": v for k, v in report["ratios"].items() if v is not None})
    return out


def track_and_register(name: str, folder: Path, report: dict[str, Any], cfg: OptimizeConfig) -> int | None:
    """Log the run (params, metrics, report) and register the folder if the gate passed."""
    from miniml.registry.store import register_model
    from miniml.registry.tracking import RunTracker

    with RunTracker(name, run_name=f"optimize-{name}") as run:
        run.log_params(cfg.model_dump(mode="json", exclude={"output"}))
        run.set_tags({"miniml.job": "optimize", "miniml.parent": report["parent"]["uri"]})
        run.log_metrics(flat_metrics(report))
        for file in sorted(folder.glob("optimize_report.*")):
            run.log_artifact(file, "report")
        if not report["gate"]["passed"] and not cfg.force:
            raise QualityGateError(
                f"{report['quality_metric']} dropped by {report['quality_drop']:.4f} "
                f"(> max_quality_drop {cfg.max_quality_drop:g}); "
                f"not registered; report: {folder / 'optimize_report.md'}",
                hint="pass --force to register anyway, or relax --set max_quality_drop=...",
            )
        if cfg.dry_run:
            return None
        steps = "+".join(s["step"] for s in report["steps"])
        mv = register_model(
            name,
            folder,
            run_id=run.run_id,
            tags={"miniml.parent": report["parent"]["uri"], "miniml.optimized": steps},
        )
        return mv.version

"""What ``miniml optimize`` runs: merge flags into the config, optimize, print the outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from miniml.config import load_config
from miniml.optimize.config import OptimizeConfig


def flag_overrides(flags: dict[str, Any], force: bool) -> list[str]:
    """Command-line flags as ``--set`` overrides (highest precedence); unset flags leave the file alone."""
    out = [f"{k}=true" for k in ("onnx", "int8") if flags.get(k)]
    out += [f"{k}={flags[k]}" for k in ("prune", "calibration", "dataset") if flags.get(k) is not None]
    if flags.get("finetune_steps") is not None:
        out.append(f"finetune.steps={flags['finetune_steps']}")
    if force:
        out.append("force=true")
    return out


def run_optimize(
    uri: str, config: Path | None, overrides: list[str], flags: dict[str, Any], *, force: bool
) -> None:
    from miniml.optimize.report import quality_metric
    from miniml.optimize.run import optimize_model

    cfg = load_config(OptimizeConfig, config, [*overrides, *flag_overrides(flags, force)])
    result = optimize_model(uri, cfg)
    r, report = result.report["ratios"], result.report
    metric, parity = quality_metric(report), report["parity"]
    close = (
        f"identical outputs {parity['identical_outputs']:.0%}"
        if "identical_outputs" in parity
        else f"max |dp| {parity['final_max_abs_diff']:.2e}"
    )
    typer.echo(f"optimized model: {result.folder}")
    typer.echo(
        f"size {r['size'] or 0:.2f}x smaller, batch-1 p50 {r.get('latency_p50_b1') or 0:.2f}x faster, "
        f"{metric} {report['parent']['quality'][metric]:.4f} -> "
        f"{report['optimized']['quality'][metric]:.4f}, {close}"
    )
    typer.echo(f"report: {result.folder / 'optimize_report.md'}")
    if result.version is not None:
        typer.echo(f"registered: {result.uri}")

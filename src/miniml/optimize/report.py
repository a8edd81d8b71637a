"""The comparison report: parent vs optimized, as JSON (machine-readable) and Markdown (for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miniml.io import atomic_write_json, atomic_write_text

REPORT_JSON = "optimize_report.json"
REPORT_MD = "optimize_report.md"


def _ratio(a: float | None, b: float | None) -> float | None:
    return float(a) / float(b) if a and b else None


def ratios(parent: dict[str, Any], optimized: dict[str, Any]) -> dict[str, float | None]:
    """How many times smaller/faster the optimized model is (>1 is better)."""
    out: dict[str, float | None] = {"size": _ratio(parent["size_bytes"], optimized["size_bytes"])}
    for batch, stats in parent["latency"].items():
        mine = optimized["latency"].get(batch, {})
        out[f"latency_p50_b{batch}"] = _ratio(stats["p50_ms"], mine.get("p50_ms"))
        out[f"throughput_b{batch}"] = _ratio(mine.get("throughput_per_s"), stats["throughput_per_s"])
    return out


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _row(label: str, a: Any, b: Any, ratio: Any, spec: str = ".2f") -> str:
    times = "" if ratio is None else "×"
    return f"| {label} | {_fmt(a, spec)} | {_fmt(b, spec)} | {_fmt(ratio, '.2f')}{times} |"


def quality_metric(report: dict[str, Any]) -> str:
    """The metric the quality gate compares (accuracy for classifiers; reports may predate the key)."""
    return str(report.get("quality_metric", "accuracy"))


def parity_line(parity: dict[str, Any]) -> str:
    """How close the optimized model's answers are to the parent's, in words."""
    if "identical_outputs" in parity:  # generative: generated texts, compared whole
        return (
            f"Parity: {parity['identical_outputs']:.1%} of {parity['samples']} generated outputs are "
            "identical to the parent's (greedy decoding, each model's own generation settings)."
        )
    export = parity.get("export_max_abs_diff")
    what = "e" if parity.get("compared") == "embeddings" else "p"
    return (
        f"Parity: max |{what}_optimized − {what}_parent| = {parity['final_max_abs_diff']:.2e} on "
        f"{parity['samples']} real texts"
        + (f"; fp32 export {export:.2e}" if export is not None else "")
        + "."
    )


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page: table, steps, parity, gate, machine."""
    p, o, r = report["parent"], report["optimized"], report["ratios"]
    lines = [
        f"# Optimization report: {report['name']}",
        "",
        f"Parent `{p['uri']}` ({p['runtime']}) → optimized ({o['runtime']}); "
        f"steps: {', '.join(s['step'] for s in report['steps'])}.",
        "",
        "| metric | parent | optimized | ratio |",
        "|---|---|---|---|",
        _row("weights size (MB)", p["size_bytes"] / 1e6, o["size_bytes"] / 1e6, r["size"]),
    ]
    for batch in p["latency"]:
        lp, lo = p["latency"][batch], o["latency"].get(batch, {})
        lines.append(
            _row(
                f"batch {batch} latency p50 (ms)",
                lp["p50_ms"],
                lo.get("p50_ms"),
                r.get(f"latency_p50_b{batch}"),
            )
        )
        lines.append(_row(f"batch {batch} latency p99 (ms)", lp["p99_ms"], lo.get("p99_ms"), None))
        lines.append(
            _row(
                f"batch {batch} throughput (texts/s)",
                lp["throughput_per_s"],
                lo.get("throughput_per_s"),
                r.get(f"throughput_b{batch}"),
                ".1f",
            )
        )
    for key in p["quality"]:
        if key != "examples":
            lines.append(
                _row(f"{report['split']} {key}", p["quality"][key], o["quality"].get(key), None, ".4f")
            )
    if any(step.get("method") == "torch_dynamic" for step in report["steps"]):
        lines += ["", "PyTorch int8 is applied when the model loads; the folder keeps fp32 weights on disk."]
    gate = report["gate"]
    lines += [
        "",
        f"Quality: {int(p['quality'].get('examples', 0))} examples of `{report['dataset']}` "
        f"split `{report['split']}`; "
        f"{quality_metric(report)} drop {report['quality_drop']:+.4f} "
        f"(limit {gate['max_quality_drop']:.4f}) → "
        f"{'passed' if gate['passed'] else 'FAILED'}{' (forced)' if gate['forced'] else ''}.",
        parity_line(report["parity"]),
        "",
        "## Steps",
        "",
    ]
    lines += [
        f"- `{s['step']}`: " + ", ".join(f"{k}={v}" for k, v in s.items() if k != "step")
        for s in report["steps"]
    ]
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}, load average {m.get('load_average')}. "
        "Timings on a shared machine are noisy.",
        "",
    ]
    return "\n".join(lines)


def write_report(folder: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``optimize_report.json`` and ``.md`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / REPORT_JSON, report)
    atomic_write_text(folder / REPORT_MD, markdown(report))
    return folder / REPORT_JSON, folder / REPORT_MD

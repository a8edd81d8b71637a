"""``miniml optimize``: resolve the parent, check the request, optimize, compare, gate, register.

Reads top to bottom: nothing is written before every input is checked; the optimized folder appears
atomically; it is registered (as the next version of the parent's registered name) only when parity held
and the quality drop is within ``max_quality_drop`` (or ``force``). The comparison report goes into the model
folder and into the MLflow run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from miniml import paths
from miniml.data.dataset import open_dataset
from miniml.errors import ConfigError, MinimlError, ModelError
from miniml.generation import GENERATIVE_TASKS
from miniml.io import atomic_dir
from miniml.modelfolder import ModelInfo, read_info, write_info
from miniml.optimize import measure
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.onnx_export import check_exportable
from miniml.optimize.onnx_runtime import ONNX_FILE
from miniml.optimize.report import ratios, write_report
from miniml.optimize.steps import Work, build_onnx, copy_support_files, step_int8_torch, step_prune

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


def check_request(info: ModelInfo, cfg: OptimizeConfig) -> None:
    """Refuse unsupported combinations before doing any work."""
    done = {s.get("step") for s in info.lineage.get("steps", [])}
    if info.runtime == "onnx" and (cfg.prune is not None or cfg.onnx):
        what = "--prune" if cfg.prune is not None else "--onnx"
        raise ModelError(
            f"model {info.name} is already an ONNX model; {what} needs the PyTorch weights",
            hint="optimize its parent PyTorch version instead (see lineage.parent in miniml.json)",
        )
    if cfg.int8 and "int8" in done:
        raise ModelError(
            f"model {info.name} is already int8-quantized", hint="optimize its parent version instead"
        )
    if cfg.onnx or (cfg.int8 and info.runtime == "onnx"):
        check_exportable(info.architecture, info.task)
    elif info.task != "classification":
        raise ModelError(
            f"miniml optimize supports classification models; {info.name} is a {info.task} model"
        )
    if cfg.pruning.method == "heads" and cfg.prune is not None and not cfg.onnx:
        raise ConfigError(
            "head pruning changes layer shapes that the PyTorch model folder cannot store",
            hint="add --onnx, or use --set pruning.method=global_unstructured",
        )
    if cfg.calibration is not None and not (cfg.onnx or info.runtime == "onnx"):
        raise ConfigError("static int8 (--calibration) runs on ONNX graphs", hint="add --onnx")


def eval_data(info: ModelInfo, cfg: OptimizeConfig) -> EvalData:
    """The real texts the comparison runs on: ``cfg.dataset`` or the dataset the parent was trained on."""
    ref, frame = eval_frame(info, cfg)
    return EvalData(ref, frame["input"].astype(str).tolist(), frame["target"].astype(str).tolist())


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


def calibration_texts(cfg: OptimizeConfig) -> list[str]:
    if cfg.calibration is None:
        return []
    frame = open_dataset(cfg.calibration).split(cfg.quantize.calibration_split)
    return frame["input"].astype(str).head(cfg.quantize.calibration_samples).tolist()


def tuning_frame(cfg: OptimizeConfig, ref: str) -> Any:
    """The split short fine-tuning after pruning runs on (None when not asked)."""
    if not cfg.finetune.steps:
        return None
    return open_dataset(ref).split(cfg.finetune.split)


def output_folder(cfg: OptimizeConfig, name: str) -> Path:
    if cfg.output is not None:
        return Path(cfg.output).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    return paths.runs_dir() / "optimize" / f"{name}-{stamp}"


def lineage(
    parent_uri: str, resolved: Any, info: ModelInfo, steps: list[dict[str, Any]], parity: dict[str, Any]
) -> dict[str, Any]:
    parent = {"uri": parent_uri, "name": resolved.name or info.name, "version": resolved.version}
    if resolved.version is None:
        parent["path"] = str(resolved.path)
    return {"parent": parent, "steps": steps, "parity": parity, "parent_lineage": info.lineage or None}


def write_torch_folder(work: Work, loaded: Any, dest: Path, info: ModelInfo) -> None:
    """A pruned (and/or torch-int8) model kept in PyTorch: fp32 safetensors, same builder and featurizer."""
    from miniml.models.folder import save_model_folder

    module = loaded.module  # the pruned fp32 module; int8 is re-applied at load time (see quantization)
    save_model_folder(dest, module, work.featurizer, loaded.spec, info)


def build(
    parent_uri: str, resolved: Any, info: ModelInfo, cfg: OptimizeConfig, data: EvalData
) -> tuple[Path, dict[str, Any]]:
    """Apply the steps and write the new model folder atomically; returns it and the lineage."""
    from miniml.models.featurizer import load_featurizer

    loaded = None
    if info.runtime == "torch":
        from miniml.models.folder import load_model_folder

        loaded = load_model_folder(resolved.path)
    work = Work(
        module=loaded.module if loaded else None,
        featurizer=loaded.featurizer if loaded else load_featurizer(resolved.path, info.preprocessing),
        architecture=info.architecture,
        folder=resolved.path,
        texts=data.texts[: cfg.measure.parity_samples],
        cfg=cfg,
        calibration=calibration_texts(cfg),
        spec=loaded.spec if loaded else None,
        tuning=tuning_frame(cfg, data.ref),
    )
    dest = output_folder(cfg, info.name)
    with tempfile.TemporaryDirectory(prefix="miniml-optimize-") as tmp, atomic_dir(dest, replace=True) as out:
        to_onnx = cfg.onnx or info.runtime == "onnx"
        graph = build_onnx(work, Path(tmp)) if to_onnx else None
        if not to_onnx:
            if cfg.prune is not None:
                step_prune(work)
            if cfg.int8:
                step_int8_torch(work)
        new_info = derived_info(info, work, graph is not None)
        new_info.lineage = lineage(parent_uri, resolved, info, work.steps, {})
        copy_support_files(resolved.path, out, {WEIGHTS_FILE, ONNX_FILE, "miniml.json"})
        if graph is not None:
            shutil.copyfile(graph, out / ONNX_FILE)
            write_info(out, new_info)
        else:
            assert loaded is not None
            write_torch_folder(work, loaded, out, new_info)
    return dest, new_info.lineage


def derived_info(info: ModelInfo, work: Work, onnx: bool) -> ModelInfo:
    data = info.model_dump()
    data["runtime"] = "onnx" if onnx else info.runtime
    data["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    int8_torch = [s for s in work.steps if s.get("method") == "torch_dynamic"]
    if int8_torch:
        data["quantization"] = {k: v for k, v in int8_torch[0].items() if k != "step"}
    return ModelInfo.model_validate(data)


def profile(
    predictor: Any, folder: Path, data: EvalData, cfg: OptimizeConfig, info: ModelInfo
) -> dict[str, Any]:
    """Size, latency at each batch size, and quality of one model, measured the same way for both."""
    m = cfg.measure
    probs = measure.predict_all(predictor, data.texts)
    return {
        "runtime": info.runtime,
        "size_bytes": measure.model_size_bytes(folder),
        "latency": {
            str(b): measure.latency(predictor.predict_proba, data.texts, b, m.repeats, m.warmup)
            for b in m.batch_sizes
        },
        "quality": measure.quality(probs, data.targets, info.labels),
        "_probs": probs,
    }


def compare(
    parent_uri: str, parent_path: Path, folder: Path, data: EvalData, cfg: OptimizeConfig
) -> dict[str, Any]:
    """Measure parent and optimized model one after the other on the same texts and threads."""
    import os

    from miniml.inference import load_predictor

    threads = cfg.measure.threads or os.cpu_count() or 1
    parent_info, new_info = read_info(parent_path), read_info(folder)
    parent = profile(
        load_predictor(parent_path, threads=threads, device="cpu"), parent_path, data, cfg, parent_info
    )
    optimized = profile(load_predictor(folder, threads=threads, device="cpu"), folder, data, cfg, new_info)
    a, b = parent.pop("_probs"), optimized.pop("_probs")
    parity = {
        "final_max_abs_diff": float(abs(a - b).max(initial=0.0)),
        "samples": len(data.texts),
        "export_max_abs_diff": next(
            (s["max_abs_diff"] for s in new_info.lineage.get("steps", []) if s["step"] == "onnx_export"), None
        ),
    }
    parent["uri"] = parent_uri
    drop = parent["quality"]["accuracy"] - optimized["quality"]["accuracy"]
    return {
        "name": new_info.name,
        "task": new_info.task,
        "dataset": data.ref,
        "split": cfg.split,
        "quality_metric": "accuracy",
        "parent": parent,
        "optimized": optimized,
        "ratios": ratios(parent, optimized),
        "quality_drop": drop,
        "parity": parity,
        "steps": new_info.lineage.get("steps", []),
        "gate": {
            "max_quality_drop": cfg.max_quality_drop,
            "passed": drop <= cfg.max_quality_drop,
            "forced": False,
        },
        "machine": measure.machine(threads),
    }


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


def optimize_model(uri: str, cfg: OptimizeConfig) -> OptimizeResult:
    """Optimize the model at ``uri`` as ``cfg`` asks; see the module docstring for the guarantees."""
    from miniml.registry.store import resolve_model

    resolved = resolve_model(uri)
    info = read_info(resolved.path)
    if info.task in GENERATIVE_TASKS:
        from miniml.optimize.generative import optimize_generative

        return optimize_generative(str(uri), resolved, info, cfg)
    check_request(info, cfg)
    data = eval_data(info, cfg)
    name = resolved.name or info.name
    folder, _ = build(str(uri), resolved, info, cfg, data)
    report = compare(str(uri), resolved.path, folder, data, cfg)
    report["gate"]["forced"] = cfg.force and not report["gate"]["passed"]
    finish_folder(folder, report)
    version = track_and_register(name, folder, report, cfg)
    return OptimizeResult(folder=folder, report=report, name=name, version=version)

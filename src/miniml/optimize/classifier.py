"""``miniml optimize`` for models of the ``probabilities`` family: featurizer + module (classifiers, and
embedding models, whose module outputs vectors: ``OptimizeSupport.outputs``).

The steps run in this order: prune (torch) → fine-tune (masks kept) → export ONNX → fuse → int8 (ONNX
Runtime, or PyTorch dynamic without ``--onnx``), each verified (``steps``). Then parent and optimized model
are measured one after the other by the same code on the same texts and threads: size, latency per batch
size, quality (classifiers: accuracy, macro-F1; other tasks: their own evaluation, e.g. recall@k and MRR)
and the largest output difference (parity: probabilities, or embeddings).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import miniml.optimize.measure as measure
from miniml.data.dataset import open_dataset
from miniml.errors import ConfigError, ModelError
from miniml.io import atomic_dir
from miniml.modelfolder import ModelInfo, read_info, write_info
from miniml.models.folder import load_model_folder, save_model_folder
from miniml.models.registry import load_featurizer
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.onnx_export import check_exportable
from miniml.optimize.outcome import WEIGHTS_FILE, EvalData, eval_frame, lineage, output_folder
from miniml.optimize.report import ratios
from miniml.optimize.steps import Work, build_onnx, copy_support_files, step_int8_torch, step_prune
from miniml.registry.uris import ModelSource
from miniml.runtime.loaded import LoadedModel
from miniml.runtime.onnx_predictor import ONNX_FILE
from miniml.tasks.base import EvaluateOptions, OptimizeSupport
from miniml.tasks.registry import get_task, load_model


def check_request(info: ModelInfo, cfg: OptimizeConfig) -> None:
    """Refuse what the probability family cannot do with this folder (ONNX parents, architectures)."""
    if info.runtime == "onnx" and (cfg.prune is not None or cfg.onnx):
        what = "--prune" if cfg.prune is not None else "--onnx"
        raise ModelError(
            f"model {info.name} is already an ONNX model; {what} needs the PyTorch weights",
            hint="optimize its parent PyTorch version instead (see lineage.parent in miniml.json)",
        )
    if cfg.onnx or (cfg.int8 and info.runtime == "onnx"):
        check_exportable(info.architecture)
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
    texts, targets = frame["input"].astype(str).tolist(), frame["target"].astype(str).tolist()
    return EvalData(ref, texts, targets, frame)


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


def write_torch_folder(work: Work, loaded: Any, dest: Path, info: ModelInfo) -> None:
    """A pruned (and/or torch-int8) model kept in PyTorch: fp32 safetensors, same builder and featurizer."""
    module = loaded.module  # the pruned fp32 module; int8 is re-applied at load time (see quantization)
    save_model_folder(dest, module, work.featurizer, loaded.spec, info)


def build(
    parent_uri: str,
    resolved: ModelSource,
    info: ModelInfo,
    cfg: OptimizeConfig,
    data: EvalData,
    support: OptimizeSupport,
) -> tuple[Path, dict[str, Any]]:
    """Apply the steps and write the new model folder atomically; returns it and the lineage."""
    loaded = None
    if info.runtime == "torch":
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
        vectors=support.outputs == "vectors",
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


def load_on_cpu(folder: Path, threads: int) -> LoadedModel:
    """The folder loaded on CPU with ``threads`` threads, as its task loads it."""
    return load_model(folder, threads=threads, device="cpu")


def derived_info(info: ModelInfo, work: Work, onnx: bool) -> ModelInfo:
    data = info.model_dump()
    data["runtime"] = "onnx" if onnx else info.runtime
    data["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    int8_torch = [s for s in work.steps if s.get("method") == "torch_dynamic"]
    if int8_torch:
        data["quantization"] = {k: v for k, v in int8_torch[0].items() if k != "step"}
    return ModelInfo.model_validate(data)


def profile(
    model: LoadedModel, data: EvalData, cfg: OptimizeConfig, support: OptimizeSupport
) -> dict[str, Any]:
    """Size, latency at each batch size, and quality of one model, measured the same way for both."""
    m, info = cfg.measure, model.info
    vectors = support.outputs == "vectors"
    runtime = model.predictor.runtime if vectors else model.predictor  # embedders: their torch/ONNX runtime
    outputs = measure.outputs_all(runtime, data.texts, vectors)
    call = runtime.outputs if vectors else runtime.predict_proba
    return {
        "runtime": info.runtime,
        "size_bytes": measure.model_size_bytes(model.path),
        "latency": {str(b): measure.latency(call, data.texts, b, m.repeats, m.warmup) for b in m.batch_sizes},
        "quality": task_quality(model, data)
        if vectors
        else measure.quality(outputs, data.targets, info.labels),
        "_outputs": outputs,
    }


def task_quality(model: LoadedModel, data: EvalData) -> dict[str, float]:
    """The task's own scores on the comparison rows (e.g. recall@k and MRR), plus how many rows."""
    evaluation = get_task(model.task).evaluate(model, data.frame, EvaluateOptions(source=data.ref))
    return {**evaluation.metrics, "examples": float(len(data.frame))}


def compare(
    parent_uri: str,
    parent_path: Path,
    folder: Path,
    data: EvalData,
    cfg: OptimizeConfig,
    support: OptimizeSupport,
) -> dict[str, Any]:
    """Measure parent and optimized model one after the other on the same texts and threads."""
    threads = cfg.measure.threads or os.cpu_count() or 1
    new_info = read_info(folder)
    parent = profile(load_on_cpu(parent_path, threads), data, cfg, support)
    optimized = profile(load_on_cpu(folder, threads), data, cfg, support)
    a, b = parent.pop("_outputs"), optimized.pop("_outputs")
    metric = support.quality_metric
    parity = {
        "compared": "embeddings" if support.outputs == "vectors" else "probabilities",
        "final_max_abs_diff": float(abs(a - b).max(initial=0.0)),
        "samples": len(data.texts),
        "export_max_abs_diff": next(
            (s["max_abs_diff"] for s in new_info.lineage.get("steps", []) if s["step"] == "onnx_export"), None
        ),
    }
    parent["uri"] = parent_uri
    drop = parent["quality"][metric] - optimized["quality"][metric]
    return {
        "name": new_info.name,
        "task": new_info.task,
        "dataset": data.ref,
        "split": cfg.split,
        "quality_metric": metric,
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

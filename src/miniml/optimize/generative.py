"""``miniml optimize`` for generative models (seq2seq, causal_lm): PyTorch int8 and/or magnitude pruning.

What works: ``--int8`` (PyTorch dynamic int8 of every ``nn.Linear``, recorded in ``miniml.json`` and
re-applied when ``Generator.load`` loads the folder; the weights stay fp32 on disk) and ``--prune`` (global
unstructured magnitude pruning of the Linear weights, tied output embeddings left alone, saved with
``save_pretrained``). ONNX export, static int8, head pruning and fine-tuning after pruning are refused with
one clear error: exporting an encoder-decoder with its generation loop is a different exporter (Optimum),
which miniml does not ship.

The comparison generates for the same test prompts with both models (their own default generation
settings): size, latency per batch, quality (the task's text metrics), and the share of identical outputs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from miniml.errors import ConfigError, ModelError
from miniml.io import atomic_dir
from miniml.modelfolder import ModelInfo, read_info, write_info
from miniml.optimize import measure
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.onnx_export import check_exportable
from miniml.optimize.report import ratios

# the metric the quality gate compares (higher is better)
PRIMARY_METRIC = {"seq2seq": "rougeL", "causal_lm": "token_f1"}


def check_generative(info: ModelInfo, folder: Path, cfg: OptimizeConfig) -> None:
    """Refuse what the generative path cannot do, before any work."""
    if cfg.onnx:
        check_exportable(info.architecture, info.task)  # raises: generative graphs are not exported
    if cfg.calibration is not None:
        raise ConfigError("static int8 (--calibration) runs on ONNX graphs", hint="drop --calibration")
    if cfg.prune is not None and cfg.pruning.method == "heads":
        raise ConfigError(
            f"head pruning is for classification models; {info.name} is a {info.task} model",
            hint="use --set pruning.method=global_unstructured",
        )
    if cfg.finetune.steps:
        raise ConfigError(
            f"fine-tuning after pruning supports classification models; {info.name} is a {info.task} model",
            hint="drop finetune.steps, or retrain the pruned model with `miniml train`",
        )
    if "int8" in {s.get("step") for s in info.lineage.get("steps", [])} and cfg.int8:
        raise ModelError(f"model {info.name} is already int8-quantized", hint="optimize its parent instead")
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"model {info.name} is an adapter-only folder; optimize needs full weights",
            hint="train it with lora.merge: true (the default), then optimize that version",
        )


def build_generative(
    folder: Path, info: ModelInfo, cfg: OptimizeConfig, dest: Path, lineage_of: Callable[[list[Any]], Any]
) -> None:
    """Write the optimized model folder to ``dest`` atomically, its lineage from ``lineage_of(steps)``."""
    from miniml.generation import Generator

    steps: list[dict[str, Any]] = []
    with atomic_dir(dest, replace=True) as out:
        pruned = cfg.prune is not None
        for item in folder.iterdir():
            weights = item.name.endswith((".safetensors", ".safetensors.index.json"))
            if item.name == "miniml.json" or item.name.startswith("optimize_report") or (pruned and weights):
                continue
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            copy(item, out / item.name)
        if pruned:
            assert cfg.prune is not None
            from miniml.optimize.prune import prune_global_unstructured

            model = Generator.load(folder, device="cpu").model
            steps.append({"step": "prune", **prune_global_unstructured(model, cfg.prune)})
            model.save_pretrained(str(out))
        data = info.model_dump()
        if cfg.int8:
            quant = {"method": "torch_dynamic", "modules": ["Linear"], "dtype": "qint8"}
            steps.append({"step": "int8", **quant})
            data["quantization"] = quant
        data["lineage"] = lineage_of(steps)
        data["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_info(out, ModelInfo.model_validate(data))


def profile(folder: Path, frame: Any, cfg: OptimizeConfig) -> tuple[dict[str, Any], list[str]]:
    """Size, generation latency per batch size and text quality of one model; also its outputs."""
    from miniml.evaluate.generative import TASK_METRICS, generate_all, perplexity, references_of, text_metrics
    from miniml.generation import Generator

    generator = Generator.load(folder, device="cpu")
    inputs = [str(x) for x in frame["input"]]
    outputs = generate_all(generator, inputs)
    names = TASK_METRICS[generator.task]
    quality = text_metrics([n for n in names if n != "perplexity"], outputs, references_of(frame))
    if "perplexity" in names:
        quality["perplexity"] = perplexity(generator, inputs, [str(t) for t in frame["target"]])
    m = cfg.measure
    latency = {
        str(b): measure.latency(
            lambda ps: generator.generate(ps, truncate=True), inputs, b, m.repeats, m.warmup
        )
        for b in m.batch_sizes
    }
    info = read_info(folder)
    part = {
        "runtime": info.runtime,
        "size_bytes": measure.model_size_bytes(folder),
        "latency": latency,
        "quality": {**quality, "examples": float(len(inputs))},
    }
    return part, outputs


def compare_generative(
    parent_uri: str, parent: Path, folder: Path, ref: str, frame: Any, cfg: OptimizeConfig
) -> dict[str, Any]:
    """Parent and optimized model, one after the other, same prompts and threads."""
    import torch

    threads = cfg.measure.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    info = read_info(folder)
    before, outputs_before = profile(parent, frame, cfg)
    after, outputs_after = profile(folder, frame, cfg)
    before["uri"] = parent_uri
    metric = PRIMARY_METRIC[info.task]
    drop = before["quality"][metric] - after["quality"][metric]
    same = sum(a == b for a, b in zip(outputs_before, outputs_after, strict=True))
    return {
        "name": info.name,
        "task": info.task,
        "dataset": ref,
        "split": cfg.split,
        "quality_metric": metric,
        "parent": before,
        "optimized": after,
        "ratios": ratios(before, after),
        "quality_drop": drop,
        "parity": {"identical_outputs": same / max(len(outputs_before), 1), "samples": len(outputs_before)},
        "steps": info.lineage.get("steps", []),
        "gate": {
            "max_quality_drop": cfg.max_quality_drop,
            "passed": drop <= cfg.max_quality_drop,
            "forced": False,
        },
        "machine": measure.machine(threads),
    }


def optimize_generative(uri: str, resolved: Any, info: ModelInfo, cfg: OptimizeConfig) -> Any:
    """The generative counterpart of ``optimize_model``: check, build, compare, gate, register."""
    from miniml.optimize.run import (
        OptimizeResult,
        eval_frame,
        finish_folder,
        lineage,
        output_folder,
        track_and_register,
    )

    check_generative(info, resolved.path, cfg)
    ref, frame = eval_frame(info, cfg)
    name = resolved.name or info.name
    folder = output_folder(cfg, info.name)
    build_generative(resolved.path, info, cfg, folder, lambda steps: lineage(uri, resolved, info, steps, {}))
    report = compare_generative(uri, resolved.path, folder, ref, frame, cfg)
    report["gate"]["forced"] = cfg.force and not report["gate"]["passed"]
    finish_folder(folder, report)
    version = track_and_register(name, folder, report, cfg)
    return OptimizeResult(folder=folder, report=report, name=name, version=version)

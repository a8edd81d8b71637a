"""``miniml optimize`` for generative models (seq2seq, causal_lm): PyTorch int8 and/or magnitude pruning.

What works: ``--int8`` (PyTorch dynamic int8 of every ``nn.Linear``, recorded in ``miniml.json`` and
re-applied when the generation runtime loads the folder; the weights stay fp32 on disk) and ``--prune``
(global unstructured magnitude pruning of the Linear weights, tied output embeddings left alone, saved with
``save_pretrained``). ONNX export, static int8, head pruning and fine-tuning after pruning are refused with
one clear error (the tasks' ``OptimizeSupport`` says so, checked in ``run``): exporting an encoder-decoder
with its generation loop is a different exporter (Optimum), which miniml does not ship.

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

import miniml.optimize.measure as measure
from miniml.errors import ModelError
from miniml.io import atomic_dir
from miniml.metrics.text import references_of, text_metrics
from miniml.modelfolder import ModelInfo, read_info, write_info
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.outcome import (
    OptimizeResult,
    eval_frame,
    finish_folder,
    lineage,
    output_folder,
    track_and_register,
)
from miniml.optimize.prune import prune_global_unstructured
from miniml.optimize.report import ratios
from miniml.registry.uris import ModelSource
from miniml.runtime.quantization import TORCH_DYNAMIC
from miniml.tasks.base import OptimizeSupport
from miniml.tasks.generative_scoring import generate_all, perplexity
from miniml.tasks.registry import get_task, load_model


def check_generative(info: ModelInfo, folder: Path) -> None:
    """Refuse what the generative path cannot do with this folder, before any work."""
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"model {info.name} is an adapter-only folder; optimize needs full weights",
            hint="train it with lora.merge: true (the default), then optimize that version",
        )


def build_generative(
    folder: Path, info: ModelInfo, cfg: OptimizeConfig, dest: Path, lineage_of: Callable[[list[Any]], Any]
) -> None:
    """Write the optimized model folder to ``dest`` atomically, its lineage from ``lineage_of(steps)``."""
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
            model = load_model(folder, device="cpu").predictor.model
            steps.append({"step": "prune", **prune_global_unstructured(model, cfg.prune)})
            model.save_pretrained(str(out))
        data = info.model_dump()
        if cfg.int8:
            steps.append({"step": "int8", **TORCH_DYNAMIC})
            data["quantization"] = dict(TORCH_DYNAMIC)
        data["lineage"] = lineage_of(steps)
        data["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_info(out, ModelInfo.model_validate(data))


def profile(folder: Path, frame: Any, cfg: OptimizeConfig) -> tuple[dict[str, Any], list[str]]:
    """Size, generation latency per batch size and text quality of one model; also its outputs."""
    loaded = load_model(folder, device="cpu")
    generator = loaded.predictor
    inputs = [str(x) for x in frame["input"]]
    outputs = generate_all(generator, inputs)
    names = getattr(get_task(loaded.info.task), "metric_names", ("exact_match", "token_f1"))
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
    parent_uri: str, parent: Path, folder: Path, ref: str, frame: Any, cfg: OptimizeConfig, metric: str
) -> dict[str, Any]:
    """Parent and optimized model, one after the other, same prompts and threads."""
    import torch

    threads = cfg.measure.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    info = read_info(folder)
    before, outputs_before = profile(parent, frame, cfg)
    after, outputs_after = profile(folder, frame, cfg)
    before["uri"] = parent_uri
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


def optimize_generative(
    uri: str, resolved: ModelSource, info: ModelInfo, cfg: OptimizeConfig, support: OptimizeSupport
) -> OptimizeResult:
    """The generative counterpart of the classifier path: check, build, compare, gate, register."""
    check_generative(info, resolved.path)
    ref, frame = eval_frame(info, cfg)
    name = resolved.name or info.name
    folder = output_folder(cfg, info.name)
    build_generative(resolved.path, info, cfg, folder, lambda steps: lineage(uri, resolved, info, steps, {}))
    report = compare_generative(uri, resolved.path, folder, ref, frame, cfg, support.quality_metric)
    report["gate"]["forced"] = cfg.force and not report["gate"]["passed"]
    finish_folder(folder, report)
    version = track_and_register(name, folder, report, cfg)
    return OptimizeResult(folder=folder, report=report, name=name, version=version)

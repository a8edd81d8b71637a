"""``miniml optimize``: resolve the parent, check the request against its task, optimize, compare, register.

Reads top to bottom: nothing is written before every input is checked (``check_support``: what the model's
task allows, ``Task.optimize``; then the family's own checks); the optimized folder appears atomically; it is
registered (as the next version of the parent's registered name) only when parity held and the quality drop
is within ``max_quality_drop`` (or ``force``). The comparison report goes into the model folder and into
the MLflow run. Two families: ``probabilities`` (:mod:`~miniml.optimize.classifier`) and ``generation``
(:mod:`~miniml.optimize.generative`).
"""

from __future__ import annotations

from miniml.errors import ConfigError, ModelError
from miniml.modelfolder import ModelInfo, read_info
from miniml.optimize.classifier import build, check_request, compare, eval_data
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.generative import optimize_generative
from miniml.optimize.outcome import OptimizeResult, finish_folder, track_and_register
from miniml.runtime.resolve import resolve
from miniml.tasks.base import OptimizeSupport
from miniml.tasks.registry import get_task, task_names


def supporting(capability: str) -> str:
    """The tasks whose models support ``capability`` (an ``OptimizeSupport`` field), for messages."""
    names = [n for n in task_names() if _supports(get_task(n).optimize, capability)]
    return ", ".join(names) or "no"


def _supports(support: OptimizeSupport, capability: str) -> bool:
    if capability == "heads":
        return "heads" in support.prune_methods
    return bool(getattr(support, capability))


def check_support(info: ModelInfo, support: OptimizeSupport, cfg: OptimizeConfig) -> None:
    """Refuse what the model's task cannot do (``Task.optimize``), before any work."""
    what = f"{info.name} is a {info.task} model"
    if support.family is None:
        raise ModelError(f"miniml optimize supports {supporting('family')} models; {what}")
    if cfg.onnx and not support.onnx:
        raise ModelError(
            f"ONNX export supports {supporting('onnx')} models; this is a {info.task} model",
            hint=f"drop --onnx: {support.refused_hint}" if support.refused_hint else None,
        )
    if cfg.int8 and not support.int8:
        raise ModelError(f"int8 quantization supports {supporting('int8')} models; {what}")
    if cfg.calibration is not None and not support.calibration:
        raise ConfigError("static int8 (--calibration) runs on ONNX graphs", hint="drop --calibration")
    if cfg.prune is not None and cfg.pruning.method not in support.prune_methods:
        if cfg.pruning.method == "heads":
            raise ConfigError(
                f"head pruning is for {supporting('heads')} models; {what}",
                hint="use --set pruning.method=global_unstructured",
            )
        raise ConfigError(f"pruning ({cfg.pruning.method}) is not available for {info.task} models")
    if cfg.finetune.steps and not support.finetune:
        raise ConfigError(
            f"fine-tuning after pruning supports {supporting('finetune')} models; {what}",
            hint="drop finetune.steps, or retrain the pruned model with `miniml train`",
        )
    if cfg.int8 and "int8" in {s.get("step") for s in info.lineage.get("steps", [])}:
        raise ModelError(
            f"model {info.name} is already int8-quantized", hint="optimize its parent version instead"
        )


def optimize_model(uri: str, cfg: OptimizeConfig) -> OptimizeResult:
    """Optimize the model at ``uri`` as ``cfg`` asks; see the module docstring for the guarantees."""
    resolved = resolve(uri)
    info = read_info(resolved.path)
    support = get_task(info.task).optimize
    check_support(info, support, cfg)
    if support.family == "generation":
        return optimize_generative(str(uri), resolved, info, cfg, support)
    check_request(info, cfg)
    data = eval_data(info, cfg)
    name = resolved.name or info.name
    folder, _ = build(str(uri), resolved, info, cfg, data, support)
    report = compare(str(uri), resolved.path, folder, data, cfg, support)
    report["gate"]["forced"] = cfg.force and not report["gate"]["passed"]
    finish_folder(folder, report)
    version = track_and_register(name, folder, report, cfg)
    return OptimizeResult(folder=folder, report=report, name=name, version=version)

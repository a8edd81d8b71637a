"""The optimization steps on one model: prune (torch) → export ONNX → fuse → int8, each verified.

``build_optimized`` writes the optimized model's weights into a folder and returns the steps it applied
(with their measured facts: sparsity, parity, fused operators). fp32 graph steps (export, fusion) must match
the PyTorch model within ``parity_tolerance`` on real texts, or the whole optimization fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from miniml.errors import ModelError
from miniml.modelfolder import read_info
from miniml.optimize.config import OptimizeConfig
from miniml.optimize.finetune import finetune
from miniml.optimize.measure import max_abs_diff
from miniml.optimize.onnx_export import export_onnx
from miniml.optimize.prune import prune_heads, sparsity, unstructured_masks
from miniml.optimize.quantize import fuse_transformer, quantize_onnx_dynamic, quantize_onnx_static
from miniml.runtime.onnx_predictor import ONNX_FILE, OnnxPredictor
from miniml.runtime.quantization import TORCH_DYNAMIC, quantize_torch_dynamic


class ParityError(ModelError):
    """An fp32 conversion changed the model's answers beyond the tolerance."""


class ModulePredictor:
    """An in-memory torch module + featurizer with the Predictor interface (for parity checks)."""

    def __init__(self, module: nn.Module, featurizer: Any) -> None:
        self.module, self.featurizer = module.eval(), featurizer

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.outputs(texts)), dim=-1).numpy()

    def outputs(self, texts: Sequence[str]) -> np.ndarray:
        """The module's raw (B, C) output (logits, or an encoder's embeddings)."""
        with torch.inference_mode():
            return self.module(**self.featurizer.batch(list(texts)))["logits"].float().numpy()


@dataclass
class Work:
    """What the steps share: the parent, the texts, the config, and what has been applied so far."""

    module: nn.Module | None
    featurizer: Any
    architecture: str
    folder: Path  # the parent model folder
    texts: list[str]  # real inputs for export examples and parity
    cfg: OptimizeConfig
    calibration: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    onnx: Path | None = None  # current ONNX graph, once exported
    facts: dict[str, Any] = field(default_factory=dict)
    spec: Any = None  # the parent's builder spec (torch parents)
    tuning: Any = None  # the split fine-tuning runs on (a DataFrame), when asked
    vectors: bool = False  # the output is an embedding (compared as it is), not class scores


def check_parity(work: Work, reference: Any, graph: Path, step: dict[str, Any]) -> None:
    """Compare ``graph`` with ``reference`` on the real texts; fail above the tolerance."""
    diff = max_abs_diff(reference, graph_predictor(work, graph), work.texts, vectors=work.vectors)
    step["max_abs_diff"] = diff
    if not diff <= work.cfg.parity_tolerance:
        raise ParityError(
            f"{step['step']} changed the {'embeddings' if work.vectors else 'probabilities'} by up to "
            f"{diff:.2e} (> parity_tolerance "
            f"{work.cfg.parity_tolerance:g}) on {len(work.texts)} real texts; nothing was registered",
            hint="this architecture does not export faithfully; keep it in PyTorch (drop --onnx)",
        )


def graph_predictor(work: Work, graph: Path) -> OnnxPredictor:
    info = read_info(work.folder)
    return OnnxPredictor(work.folder, info, threads=work.cfg.measure.threads, file=str(graph.resolve()))


def step_prune(work: Work) -> None:
    """Prune, fine-tune if asked (masks kept), and record the sparsity measured after both."""
    assert work.module is not None and work.cfg.prune is not None
    amount = work.cfg.prune
    if work.cfg.pruning.method == "heads":
        work.steps.append({"step": "prune", **prune_heads(work.module, amount)})
        step_finetune(work)
        return
    step: dict[str, Any] = {"step": "prune"}
    work.steps.append(step)
    with unstructured_masks(work.module, amount):
        step_finetune(work)
    step.update({"method": "global_unstructured", "requested": amount, **sparsity(work.module)})
    if work.tuning is not None:
        step["measured"] = "after fine-tuning"


def step_finetune(work: Work) -> None:
    if work.tuning is None:
        return
    assert work.module is not None
    labels = read_info(work.folder).labels
    facts = finetune(work.module, work.featurizer, work.spec, labels, work.tuning, work.cfg.finetune)
    work.steps.append(facts)


def example_batch(work: Work) -> dict[str, torch.Tensor]:
    """A few real texts of different lengths, so the traced graph sees padding."""
    by_length = sorted(work.texts[:32], key=len)
    picks = [by_length[0], by_length[-1], by_length[len(by_length) // 2]] if by_length else ["example"]
    return dict(work.featurizer.batch(picks))


def step_export(work: Work, scratch: Path) -> None:
    assert work.module is not None
    dest = scratch / "export.onnx"
    work.facts = export_onnx(work.module, work.architecture, example_batch(work), dest, work.cfg.export)
    step: dict[str, Any] = {"step": "onnx_export", "opset": work.cfg.export.opset, "exporter": "torchscript"}
    check_parity(work, ModulePredictor(work.module, work.featurizer), dest, step)
    work.steps.append(step)
    work.onnx = dest
    # heads pruned unevenly per layer break the fused Attention kernel's single head count
    if work.cfg.export.fuse and not any(s.get("method") == "heads" for s in work.steps):
        step_fuse(work, scratch, ModulePredictor(work.module, work.featurizer))


def step_fuse(work: Work, scratch: Path, reference: Any) -> None:
    assert work.onnx is not None
    dest = scratch / "fused.onnx"
    fused = fuse_transformer(work.onnx, dest, work.facts)
    if fused is None:
        return
    step: dict[str, Any] = {"step": "fuse", "fused": fused}
    check_parity(work, reference, dest, step)
    work.steps.append(step)
    work.onnx = dest


def calibration_feeds(work: Work, graph: Path) -> list[dict[str, np.ndarray]]:
    predictor = graph_predictor(work, graph)
    texts = work.calibration[: work.cfg.quantize.calibration_samples]
    return [predictor.feeds(texts[i : i + 8]) for i in range(0, len(texts), 8)]


def step_int8_onnx(work: Work, scratch: Path) -> None:
    assert work.onnx is not None
    dest = scratch / "int8.onnx"
    settings = work.cfg.quantize
    if work.calibration:
        feeds = calibration_feeds(work, work.onnx)
        facts = quantize_onnx_static(
            work.onnx, dest, feeds, per_channel=settings.per_channel, method=settings.calibration_method
        )
    else:
        facts = quantize_onnx_dynamic(
            work.onnx, dest, per_channel=settings.per_channel, reduce_range=settings.reduce_range
        )
    work.steps.append({"step": "int8", **facts})
    work.onnx = dest


def step_int8_torch(work: Work) -> None:
    assert work.module is not None
    work.module = quantize_torch_dynamic(work.module)
    work.steps.append({"step": "int8", **TORCH_DYNAMIC})


def build_onnx(work: Work, scratch: Path) -> Path:
    """Run the requested steps ending in an ONNX graph; returns the final graph file."""
    if work.module is not None:  # a torch parent
        if work.cfg.prune is not None:
            step_prune(work)
        step_export(work, scratch)
    else:  # an fp32 ONNX parent: only int8 applies
        work.onnx = work.folder / ONNX_FILE
    if work.cfg.int8:
        if work.calibration and work.steps and work.steps[-1]["step"] == "fuse":
            # static QDQ quantization covers plain MatMuls; quantize the unfused export instead
            work.steps.pop()
            work.onnx = scratch / "export.onnx"
        step_int8_onnx(work, scratch)
    assert work.onnx is not None
    return work.onnx


def copy_support_files(parent: Path, dest: Path, skip: set[str]) -> None:
    """Tokenizer, featurizer, config files of the parent (everything but weights and ``miniml.json``)."""
    for item in parent.iterdir():
        if item.name in skip or item.name.startswith("optimize_report"):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)

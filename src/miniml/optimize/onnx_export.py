"""PyTorch classifier → ONNX graph with dynamic batch and sequence axes, one exporter per architecture.

Uses ``torch.onnx.export`` directly with the TorchScript tracer (``dynamo=False``): it needs no extra
package (the dynamo exporter needs onnxscript), exports in seconds instead of minutes, handles
``nn.EmbeddingBag`` with offsets, and gives the graph shapes that onnxruntime's BERT fusions (Attention,
EmbedLayerNormalization, SkipLayerNormalization) recognise. optimum's exporter now lives in
``optimum-onnx``, which pins transformers < 5, so it is not used.

The graph's inputs are named after the keys of ``featurizer.batch(texts)`` (the same preprocessing code the
torch path runs); its single output is ``logits``. Every input axis is dynamic.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from miniml.errors import ModelError
from miniml.optimize.config import ExportSettings

Exporter = Callable[[nn.Module, dict[str, torch.Tensor], Path, ExportSettings], dict[str, Any]]
_EXPORTERS: dict[str, Exporter] = {}
OUTPUT_NAME = "logits"


def register_exporter(*architectures: str) -> Callable[[Exporter], Exporter]:
    """Decorator: ``fn`` exports models whose ``miniml.json`` architecture is one of ``architectures``."""

    def wrap(fn: Exporter) -> Exporter:
        for name in architectures:
            _EXPORTERS[name] = fn
        return fn

    return wrap


def exportable_architectures() -> list[str]:
    return sorted(_EXPORTERS)


def check_exportable(architecture: str) -> None:
    """A clear ModelError before any work if this architecture cannot go to ONNX (tasks that cannot are
    refused earlier, by their ``OptimizeSupport``)."""
    if architecture not in _EXPORTERS:
        raise ModelError(
            f"the ONNX exporter cannot handle architecture {architecture!r}",
            hint=f"exportable: {', '.join(exportable_architectures())}",
        )


class LogitsOnly(nn.Module):
    """Positional inputs (in ``names`` order) → the module's ``logits``: the signature the tracer needs."""

    def __init__(self, module: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.module = module
        self.names = list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.module(**dict(zip(self.names, inputs, strict=True)))
        return out[OUTPUT_NAME] if isinstance(out, Mapping) else out.logits


def dynamic_axes(batch: Mapping[str, torch.Tensor]) -> dict[str, dict[int, str]]:
    """Every axis of every input is dynamic; the output's batch axis too."""
    axes = {name: {i: f"{name}_dim{i}" for i in range(t.dim())} for name, t in batch.items()}
    axes[OUTPUT_NAME] = {0: "batch"}
    return axes


def trace_to_onnx(
    module: nn.Module, batch: dict[str, torch.Tensor], dest: Path, settings: ExportSettings
) -> None:
    """Trace ``module`` on ``batch`` and write ``dest``; any exporter failure is one ModelError line."""
    names = list(batch)
    wrapper = LogitsOnly(module, names).eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # the tracer warns about every Python bool it freezes; parity on real inputs is the real check
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(batch[n] for n in names),
                str(dest),
                dynamo=False,
                opset_version=settings.opset,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes(batch),
                do_constant_folding=True,
            )
    except Exception as err:  # the exporter raises many types; the user needs one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelError(
            f"the ONNX exporter cannot handle this model ({type(module).__name__}): {first}",
            hint="keep it in PyTorch: optimize with --prune or --int8 without --onnx",
        ) from None


@register_exporter("hashing_bag", "char_cnn", "bilstm")
def export_scratch(
    module: nn.Module, batch: dict[str, torch.Tensor], dest: Path, settings: ExportSettings
) -> dict[str, Any]:
    """From-scratch builders: the module as it is (EmbeddingBag + offsets becomes an ONNX Loop)."""
    trace_to_onnx(module, batch, dest, settings)
    return {}


def hf_config(module: nn.Module) -> Any:
    """The transformers config of a classifier (AutoModelFor... or miniml's mean-pool head)."""
    config = getattr(module, "config", None)
    if config is None:
        raise ModelError(f"{type(module).__name__} has no transformers config; cannot export it as 'hf'")
    return config


@register_exporter("hf", "hf_mean_pool", "encoder")
def export_hf(
    module: nn.Module, batch: dict[str, torch.Tensor], dest: Path, settings: ExportSettings
) -> dict[str, Any]:
    """Hugging Face encoders: traced with eager attention, whose graph onnxruntime fuses into Attention."""
    config = hf_config(module)
    for sub in module.modules():
        setter: Any = getattr(sub, "set_attn_implementation", None)
        if setter is not None:
            setter("eager")  # sdpa traces to a graph the fusions do not match
            break
    trace_to_onnx(module, batch, dest, settings)
    return {
        "model_type": getattr(config, "model_type", None),
        "num_heads": int(getattr(config, "num_attention_heads", 0) or 0),
        "hidden_size": int(getattr(config, "hidden_size", 0) or 0),
    }


def export_onnx(
    module: nn.Module, architecture: str, batch: dict[str, torch.Tensor], dest: Path, settings: ExportSettings
) -> dict[str, Any]:
    """Export ``module`` to ``dest`` with the exporter of its architecture; returns facts for later steps."""
    module.eval()
    return _EXPORTERS[architecture](module, batch, dest, settings)

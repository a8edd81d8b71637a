"""The ``optimize`` step's config: which steps to apply, tolerances, quality gate and how to measure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from miniml.config import StepConfig


class ExportSettings(BaseModel):
    """How the PyTorch module becomes an ONNX graph."""

    model_config = ConfigDict(extra="forbid")

    opset: int = Field(17, ge=17, le=20, description="ONNX opset (17+: LayerNormalization is one op)")
    exporter: Literal["torchscript"] = Field(
        "torchscript",
        description="torch.onnx exporter: the TorchScript tracer, whose graphs onnxruntime's fusions match",
    )
    fuse: bool = Field(
        True, description="fuse attention/LayerNorm/GELU with onnxruntime's transformer optimizer"
    )


class QuantizeSettings(BaseModel):
    """int8 quantization settings."""

    model_config = ConfigDict(extra="forbid")

    per_channel: bool = Field(True, description="one scale per output channel of each weight")
    reduce_range: bool = Field(
        True, description="7-bit weights: avoids u8s8 overflow on x86 CPUs without VNNI (AVX2/AVX-512)"
    )
    calibration_split: str = Field(
        "validation", min_length=1, description="split used for static calibration"
    )
    calibration_samples: int = Field(256, ge=8, le=100_000, description="texts fed to the calibrator")
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"


class PruneSettings(BaseModel):
    """Magnitude pruning settings (the sparsity itself is ``prune``)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["global_unstructured", "heads"] = Field(
        "global_unstructured",
        description="global_unstructured: smallest |w| of all Linear weights; heads: whole attention heads",
    )


class FinetuneSettings(BaseModel):
    """Short fine-tuning after pruning, on a split of the model's dataset (pruned weights stay zero)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(0, ge=0, le=1_000_000, description="optimizer steps after pruning (0: no fine-tuning)")
    learning_rate: float = Field(5e-5, gt=0.0, le=10.0)
    batch_size: int = Field(16, ge=1, le=65536)
    split: str = Field("train", min_length=1, description="split of the dataset to fine-tune on")
    optimizer: Literal["adamw", "sgd", "adagrad"] | None = Field(
        None, description="None: adamw, or adagrad for models with sparse embedding gradients"
    )
    seed: int = 42


class MeasureSettings(BaseModel):
    """How the comparison report measures speed and quality."""

    model_config = ConfigDict(extra="forbid")

    threads: int | None = Field(None, ge=1, le=256, description="intra-op threads (None: all cores)")
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 32], min_length=1)
    repeats: int = Field(50, ge=3, le=100_000, description="timed calls per batch size")
    warmup: int = Field(3, ge=0, le=1000)
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N test rows (None: all)")
    parity_samples: int = Field(64, ge=1, le=100_000, description="real texts used for the parity check")


class OptimizeConfig(StepConfig):
    """``miniml optimize MODEL_URI``: prune → export ONNX → int8, verified, compared and registered."""

    env_section: ClassVar[str] = "optimize"

    onnx: bool = Field(False, description="export to ONNX (runtime: onnx)")
    int8: bool = Field(
        False, description="int8 quantization (ONNX Runtime, or PyTorch dynamic without --onnx)"
    )
    prune: float | None = Field(None, gt=0.0, lt=1.0, description="fraction of weights (or heads) to prune")
    calibration: str | None = Field(None, description="dataset for static int8 calibration (ref or folder)")
    dataset: str | None = Field(
        None, description="dataset for the quality comparison (default: the parent's)"
    )
    split: str = Field("test", min_length=1, description="split the quality comparison runs on")
    parity_tolerance: float = Field(1e-4, gt=0.0, description="max |p_onnx - p_torch| of an fp32 export")
    max_quality_drop: float = Field(0.01, ge=0.0, le=1.0, description="largest accuracy drop to register")
    force: bool = Field(False, description="register even when the quality drop is above max_quality_drop")
    dry_run: bool = Field(False, description="write and measure the optimized folder but register nothing")
    output: Path | None = Field(None, description="where to write the model folder (default: under runs/)")
    export: ExportSettings = Field(default_factory=lambda: ExportSettings.model_validate({}))
    quantize: QuantizeSettings = Field(default_factory=lambda: QuantizeSettings.model_validate({}))
    pruning: PruneSettings = Field(default_factory=lambda: PruneSettings.model_validate({}))
    finetune: FinetuneSettings = Field(default_factory=lambda: FinetuneSettings.model_validate({}))
    measure: MeasureSettings = Field(default_factory=lambda: MeasureSettings.model_validate({}))

    @model_validator(mode="after")
    def _check_steps(self) -> OptimizeConfig:
        if not (self.onnx or self.int8 or self.prune is not None):
            raise ValueError(
                "nothing to do: ask for at least one of onnx, int8, prune (--onnx/--int8/--prune)"
            )
        if self.calibration is not None and not self.int8:
            raise ValueError("calibration is for static int8 quantization: add int8 (--int8)")
        if self.finetune.steps and self.prune is None:
            raise ValueError("finetune recovers quality after pruning: add prune (--prune SPARSITY)")
        return self


def flag_overrides(flags: dict[str, Any], force: bool) -> list[str]:
    """Command-line flags as ``--set`` overrides (highest precedence); unset flags leave the file alone."""
    out = [f"{k}=true" for k in ("onnx", "int8") if flags.get(k)]
    out += [f"{k}={flags[k]}" for k in ("prune", "calibration", "dataset") if flags.get(k) is not None]
    if flags.get("finetune_steps") is not None:
        out.append(f"finetune.steps={flags['finetune_steps']}")
    if force:
        out.append("force=true")
    return out

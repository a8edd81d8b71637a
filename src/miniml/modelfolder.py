"""The model folder: the one self-contained artifact that training writes and everything else loads.

Layout::

    model/
        miniml.json              # ModelInfo below
        model.safetensors | model.onnx
        config.json, tokenizer files          # Hugging Face models
        featurizer.json                       # from-scratch models

Loadable without MLflow; never pickle. Training, evaluation, batch prediction and serving all read the
preprocessing settings from ``miniml.json`` and run the same code on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import ModelError
from miniml.io import atomic_write_json

INFO_FILE = "miniml.json"
Task = Literal["classification", "seq2seq", "causal_lm"]


class ModelInfo(BaseModel):
    """What ``miniml.json`` says about a model folder."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = 1
    name: str
    task: Task
    runtime: Literal["torch", "onnx"] = "torch"
    architecture: str = Field(description="builder name for from-scratch models, or 'hf' for transformers")
    labels: list[str] = Field(default_factory=list)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    base_model: str | None = None
    dataset: dict[str, Any] = Field(default_factory=dict, description="name, fingerprint, source")
    metrics: dict[str, float] = Field(default_factory=dict)
    logit_temperature: float = Field(
        default=1.0,
        gt=0,
        description="classification: logits are divided by it before the softmax (calibration)",
    )
    lineage: dict[str, Any] = Field(default_factory=dict, description="parent version, steps applied")
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    miniml_version: str = ""


def read_info(folder: Path) -> ModelInfo:
    """Read ``miniml.json`` from a model folder; a clear ModelError if it is not one."""
    file = Path(folder) / INFO_FILE
    if not file.is_file():
        raise ModelError(
            f"{folder} is not a miniml model folder (no {INFO_FILE})",
            hint="pass a folder written by `miniml train`, or a models:/NAME@ALIAS URI",
        )
    try:
        return ModelInfo.model_validate_json(file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ModelError(f"{file} is corrupted: {str(err).splitlines()[0]}") from None


def write_info(folder: Path, info: ModelInfo) -> None:
    atomic_write_json(Path(folder) / INFO_FILE, info.model_dump(mode="json"))

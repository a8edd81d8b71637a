"""The model folder: the one self-contained artifact that training writes and everything else loads.

Layout::

    model/
        miniml.json              # ModelInfo below
        README.md                # the model card, rendered from miniml.json (miniml.modelcard)
        model.safetensors | model.onnx
        config.json, tokenizer files          # Hugging Face models
        featurizer.json                       # from-scratch models

Loadable without MLflow; never pickle. Training, evaluation, batch prediction and serving all read the
preprocessing settings from ``miniml.json`` and run the same code on them.

**Manifest.** :func:`write_info` (always the last write of a folder) records the sha256 of every other
file in ``miniml.json`` (``manifest``, relative path → hex digest; format version 2), and every loader
calls :func:`verify_folder` first: a changed, missing or added file is a ModelError naming it, so random
bytes in the weights or an edited ``featurizer.json`` are refused instead of served. Hidden files (``.x``,
e.g. the registry's download marker) are not part of a folder. The manifest guards against corruption and
edits by mistake, not against someone who can rewrite ``miniml.json`` too (that needs signatures).

**Versions.** ``format_version`` 1 is a folder written before manifests existed: it still loads, with a
warning (once per folder and process) that its files are not verified; saving it again through miniml
(e.g. ``miniml optimize``) writes version 2. A version-2 folder without a manifest, and any version this
miniml does not know (a newer writer), are refused.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import ModelError
from miniml.io import atomic_write_json
from miniml.modelcard import write_card

log = logging.getLogger("miniml")

INFO_FILE = "miniml.json"
FORMAT_VERSION = 2  # 2: miniml.json carries the manifest
LEGACY_VERSION = 1  # written before manifests: loads unverified, with a warning
_warned: set[Path] = set()


class ModelInfo(BaseModel):
    """What ``miniml.json`` says about a model folder."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = LEGACY_VERSION
    name: str
    task: str = Field(description="the task that wrote it (miniml.tasks): classification, seq2seq, ...")
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
    label_weights: dict[str, float] = Field(
        default_factory=dict,
        description="classification: each label's probability is multiplied by its weight, then the "
        "probabilities are renormalised (a prior shift: log(weight) added to the logit); absent labels: 1",
    )
    lineage: dict[str, Any] = Field(default_factory=dict, description="parent version, steps applied")
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    miniml_version: str = ""
    manifest: dict[str, str] | None = Field(
        default=None, description="sha256 of every other file of the folder, by relative path"
    )


def logit_offsets(info: ModelInfo) -> np.ndarray | None:
    """``log(label_weights)`` per column of ``info.labels`` as float32 (None: every weight is 1)."""
    if not info.label_weights or all(w == 1.0 for w in info.label_weights.values()):
        return None
    return np.log(np.array([info.label_weights.get(x, 1.0) for x in info.labels], dtype=np.float64)).astype(
        np.float32
    )


def read_info(folder: Path) -> ModelInfo:
    """Read ``miniml.json`` from a model folder; a clear ModelError if it is not one."""
    file = Path(folder) / INFO_FILE
    if not file.is_file():
        raise ModelError(
            f"{folder} is not a miniml model folder (no {INFO_FILE})",
            hint="pass a folder written by `miniml train`, or a models:/NAME@ALIAS URI",
        )
    try:
        info = ModelInfo.model_validate_json(file.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:
        raise ModelError(f"{file} is corrupted: {str(err).splitlines()[0]}") from None
    if info.format_version not in (LEGACY_VERSION, FORMAT_VERSION):
        raise ModelError(
            f"{file} has format_version {info.format_version}; this miniml reads versions "
            f"{LEGACY_VERSION} and {FORMAT_VERSION}",
            hint="it was written by another miniml version: use that one, or retrain with this one",
        )
    return info


def write_info(folder: Path, info: ModelInfo) -> None:
    """Write ``miniml.json`` with the manifest of every other file: call it after the folder is complete.

    The model card (``README.md``, rendered from ``info``) is written first, so the manifest covers it."""
    folder = Path(folder)
    write_card(folder, info)
    data = info.model_dump(mode="json")
    data.update(format_version=FORMAT_VERSION, manifest=manifest_of(folder))
    atomic_write_json(folder / INFO_FILE, data)


def folder_files(folder: Path) -> list[str]:
    """Relative paths of a folder's files, ``miniml.json`` and hidden files and folders left out."""
    out = []
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.as_posix() != INFO_FILE and not any(p.startswith(".") for p in rel.parts):
            out.append(rel.as_posix())
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file of ``folder`` (see :func:`folder_files`)."""
    return {rel: sha256_file(Path(folder) / rel) for rel in folder_files(folder)}


def verify_folder(folder: Path) -> ModelInfo:
    """``miniml.json`` of a folder whose files match its manifest; a ModelError naming the first mismatch."""
    folder = Path(folder)
    info = read_info(folder)
    if info.manifest is None:
        if info.format_version != LEGACY_VERSION:
            raise ModelError(
                f"{folder / INFO_FILE} has no manifest", hint="the folder is damaged: restore or retrain it"
            )
        if folder.resolve() not in _warned:
            _warned.add(folder.resolve())
            log.warning(
                "model folder %s has no manifest (written by an older miniml): its files are not verified",
                folder,
            )
        return info
    listed = set(info.manifest)
    for rel in listed:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise ModelError(f"{folder / INFO_FILE}: manifest entry {rel!r} points outside the folder")
    for rel in folder_files(folder):
        if rel not in listed:
            raise ModelError(
                f"model folder {folder}: file {rel} is not in the manifest of {INFO_FILE} (added later)",
                hint="remove it, or restore the folder",
            )
    for rel, expected in sorted(info.manifest.items()):
        path = folder / rel
        if not path.is_file():
            raise ModelError(f"model folder {folder}: file {rel} is missing", hint="copy the whole folder")
        if sha256_file(path) != expected:
            raise ModelError(
                f"model folder {folder}: file {rel} does not match its sha256 in {INFO_FILE} "
                "(changed or damaged since the folder was saved)",
                hint="restore the folder from the registry or retrain",
            )
    return info

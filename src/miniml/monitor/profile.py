"""The reference profile (``reference.json``): what a model's training data looked like, for drift checks.

Written into every model folder at training time, or by ``miniml monitor profile`` for versions trained
before (kept then in ``MINIML_HOME/monitor/NAME/VERSION/reference.json``, since a registered folder is
immutable). It holds, from the **training** split: input length in characters and in words (counts over
quantile bins), the vocabulary (a hashed bit set), the letters' writing systems; from the **validation**
split: its unknown-word rate against that vocabulary (the training split has none by construction), the
predicted label distribution and the top-1 confidence (quantile bins); and, for models that can embed
texts (transformer encoders), a seeded sample of validation embeddings (float16).
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from miniml.errors import ModelError
from miniml.io import atomic_write_json
from miniml.monitor.signals import Vocabulary, text_signals
from miniml.monitor.stats import bin_counts, quantile_edges
from miniml.paths import home

REFERENCE_FILE = "reference.json"
FORMAT: Literal["miniml.reference/1"] = "miniml.reference/1"
PROFILE_ROWS = 20_000  # rows sampled per split: enough for 10 quantile bins, seconds to compute
EMBEDDING_ROWS = 256

ProbaFn = Callable[[Sequence[str]], np.ndarray]  # texts → (N, C) probabilities
EmbedFn = Callable[[Sequence[str]], np.ndarray]  # texts → (N, D) embeddings


class Binned(BaseModel):
    """A numeric signal: inner bin edges and the reference's counts per bin (len(edges) + 1)."""

    model_config = ConfigDict(extra="forbid")
    edges: list[float]
    counts: list[int]
    mean: float


class Embeddings(BaseModel):
    """A sample of embeddings: (rows, dim) float16, base64."""

    model_config = ConfigDict(extra="forbid")
    rows: int
    dim: int
    data: str

    def array(self) -> np.ndarray:
        raw = np.frombuffer(base64.b64decode(self.data), dtype="<f2")
        return raw.reshape(self.rows, self.dim).astype(np.float32)

    @classmethod
    def of(cls, matrix: np.ndarray) -> Embeddings:
        m = np.asarray(matrix, dtype="<f2")
        return cls(rows=m.shape[0], dim=m.shape[1], data=base64.b64encode(m.tobytes()).decode("ascii"))


class ReferenceProfile(BaseModel):
    """What ``reference.json`` says (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format: Literal["miniml.reference/1"] = FORMAT
    model: str
    labels: list[str]
    dataset: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    train_rows: int
    validation_rows: int
    chars: Binned
    tokens: Binned
    vocabulary: str = Field(description="hashed word set, see miniml.monitor.signals.Vocabulary")
    oov_unknown: int = Field(description="validation words not in the training vocabulary")
    oov_tokens: int = Field(description="validation words")
    scripts: dict[str, int] = Field(description="training letters per writing system")
    predicted_labels: dict[str, int] = Field(description="validation top-1 predictions per label")
    confidence: Binned
    embeddings: Embeddings | None = None
    _vocab: Vocabulary | None = PrivateAttr(default=None)

    @property
    def oov_rate(self) -> float:
        return self.oov_unknown / self.oov_tokens if self.oov_tokens else 0.0

    def vocab(self) -> Vocabulary:
        """The training vocabulary (decoded once per profile object)."""
        if self._vocab is None:
            self._vocab = Vocabulary.loads(self.vocabulary)
        return self._vocab


def binned(values: np.ndarray, bins: int = 10) -> Binned:
    edges = quantile_edges(values, bins)
    counts = bin_counts(values, edges)
    mean = float(values.mean()) if values.size else 0.0
    return Binned(edges=edges, counts=[int(c) for c in counts], mean=mean)


def sample(texts: Sequence[str], rows: int, seed: int = 0) -> list[str]:
    """At most ``rows`` texts, a seeded sample (all of them when fewer)."""
    texts = list(texts)
    if len(texts) <= rows:
        return texts
    return random.Random(seed).sample(texts, rows)


def build_profile(
    *,
    model: str,
    labels: Sequence[str],
    train: Sequence[str],
    validation: Sequence[str],
    predict_proba: ProbaFn,
    embed: EmbedFn | None = None,
    dataset: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """Profile a model's training data (see the module docstring); ``predict_proba`` scores validation."""
    if not train or not validation:
        raise ModelError(
            f"cannot profile {model}: the training and validation splits must both have rows",
            hint="prepare the dataset with a validation split",
        )
    train_rows = sample(train, PROFILE_ROWS)
    val_rows = sample(validation, PROFILE_ROWS, seed=1)
    vocabulary = Vocabulary.of(train)
    seen = text_signals(train_rows, None)
    held = text_signals(val_rows, vocabulary)
    probs = np.asarray(predict_proba(val_rows), dtype=np.float32)  # (N, C)
    top = probs.argmax(axis=1)
    predicted = np.bincount(top, minlength=len(labels))
    embeddings = None
    if embed is not None:
        embeddings = Embeddings.of(np.asarray(embed(sample(val_rows, EMBEDDING_ROWS, seed=2))))
    return ReferenceProfile(
        model=model,
        labels=list(labels),
        dataset=dict(dataset or {}),
        train_rows=len(train),
        validation_rows=len(validation),
        chars=binned(seen.chars),
        tokens=binned(seen.tokens),
        vocabulary=vocabulary.dumps(),
        oov_unknown=int(held.unknown.sum()),
        oov_tokens=int(held.tokens.sum()),
        scripts=dict(seen.scripts),
        predicted_labels={label: int(n) for label, n in zip(labels, predicted, strict=True)},
        confidence=binned(probs.max(axis=1)),
        embeddings=embeddings,
    )


def write_profile(path: Path, profile: ReferenceProfile) -> Path:
    """Write ``reference.json`` atomically (``path``: the file, or a folder to put it in)."""
    file = path / REFERENCE_FILE if path.is_dir() else path
    atomic_write_json(file, profile.model_dump(mode="json"))
    return file


def read_profile(path: Path) -> ReferenceProfile:
    """Read a ``reference.json`` (a file or the folder holding one); a ModelError if damaged."""
    file = path / REFERENCE_FILE if path.is_dir() else path
    try:
        return ReferenceProfile.model_validate_json(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"no reference profile at {file}", hint="write one with `miniml monitor profile MODEL_URI`"
        ) from None
    except ValueError as err:
        raise ModelError(f"{file} is not a valid reference profile: {str(err).splitlines()[0]}") from None


def profile_path(folder: Path, name: str, version: int | None) -> Path:
    """Where ``miniml monitor profile`` keeps the profile of a model whose folder has none (a registered
    folder is immutable, its manifest lists every file): ``MINIML_HOME/monitor/NAME/vVERSION/`` for a
    registered version, ``MINIML_HOME/monitor/NAME/sha-DIGEST/`` (of its ``miniml.json``) for a folder."""
    if version is not None:
        tag = f"v{version}"
    else:
        tag = "sha-" + hashlib.sha256((Path(folder) / "miniml.json").read_bytes()).hexdigest()[:16]
    return home() / "monitor" / name / tag / REFERENCE_FILE


def find_profile(folder: Path, name: str, version: int | None) -> Path | None:
    """The profile of a model: in its folder (written by training), else under ``MINIML_HOME/monitor``."""
    for candidate in (Path(folder) / REFERENCE_FILE, profile_path(folder, name, version)):
        if candidate.is_file():
            return candidate
    return None

"""Task ``embedding``: a text in, a fixed-size vector out, close to the vectors of texts that mean the same.

- **Model**: an ``encoder`` (:mod:`miniml.models.encoder`): any Hugging Face encoder checkpoint or folder (the
  packaged all-MiniLM-L6-v2 offline: ``minilm``), or the encoder of a miniml classifier (its model folder or
  ``models:/`` URI), pooled (mean / cls), normalised or not, with a token cap (``max_tokens``: longer inputs
  are refused, never silently cut).
- **Training** on pairs: ``input`` and ``target`` are texts that should embed close (paraphrases, a question
  and its answer); an optional ``negative`` column holds a text that should not (a hard negative). The loss is
  sentence-transformers' MultipleNegativesRankingLoss: for a batch of B pairs, each input's target must score
  above the other B-1 targets (and every hard negative of the batch), as cross-entropy over scaled cosine
  similarities. Pairs of one group landing in one batch are false negatives; rare in small batches.
- **Metrics** on a split: recall@1, recall@10 and MRR of retrieving each input's target among all the split's
  distinct targets (and its negatives, as distractors) — :mod:`miniml.metrics.retrieval`.
- **Model folder**: the encoder's weights, tokenizer and ``builder.json`` like a classifier's, plus an
  ``embedding`` section in ``miniml.json`` (dimensions, pooling, normalize, max_tokens, truncation). It runs
  on the ``torch`` or ``onnx`` runtime (:class:`~miniml.runtime.embedder.Embedder`), so ``miniml optimize``
  exports it to ONNX and int8 like a classifier.
- **Without training**: :meth:`EmbeddingTask.import_model` packages a checkpoint (the untrained baseline) or
  a classifier's encoder as a model folder (``miniml models import``).
- **Answers**: ``{"embedding": [...], "tokens": N}`` for ``miniml predict``; ``POST /v1/embeddings`` (OpenAI
  shape) through the hooks of :mod:`~miniml.tasks.embedding_serving`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, ValidationError
from torch import nn

from miniml.config import format_validation_error
from miniml.errors import ConfigError, DataError, ModelError
from miniml.io import atomic_write_json, atomic_write_text
from miniml.metrics.retrieval import Retrieval, rank_candidates
from miniml.modelfolder import ModelInfo, read_info
from miniml.models.encoder import EncoderSpec, SentenceEncoder, encoder
from miniml.models.folder import load_model_folder, save_model_folder
from miniml.models.pretrained import TokenizerFeaturizer
from miniml.registry.uris import is_model_uri
from miniml.runtime.embedder import Embedder, EmbeddingSettings
from miniml.runtime.resolve import resolve
from miniml.runtime.table import open_runtime
from miniml.tasks.base import EvaluateOptions, OptimizeSupport, TrainConfig, TrainingContext
from miniml.tasks.embedding_card import CARD
from miniml.tasks.embedding_serving import EmbeddingHandler, check_texts

if TYPE_CHECKING:
    from miniml.runtime.loaded import LoadedModel

NAME = "embedding"
NEGATIVE = "negative"  # optional dataset column: a text that should not embed close to the input
METRICS = ("recall_at_1", "recall_at_10", "mrr")


class EmbeddingConfig(TrainConfig):
    """``task: embedding``: an ``encoder`` fine-tuned on (input, target[, negative]) pairs."""

    task: Literal["embedding"] = "embedding"
    model: EncoderSpec = Field(default_factory=lambda: EncoderSpec.model_validate({}))
    metric_for_best: str = Field("mrr", description="loss, recall_at_1, recall_at_10 or mrr (validation)")
    loss_scale: float = Field(20.0, gt=0, le=1000, description="cosine similarities are multiplied by it")


# ---------------------------------------------------------------- the encoder to start from
def source_folder(ref: str) -> Path | None:
    """The model folder of a miniml classifier named by ``ref`` (a ``models:/`` URI or a folder), or None."""
    if is_model_uri(ref):
        return resolve(ref).path
    path = Path(ref).expanduser()
    return path if (path / "miniml.json").is_file() else None


def classifier_encoder(folder: Path) -> nn.Module:
    """The encoder of a classifier's model folder (``hf`` or ``hf_mean_pool``), without its head."""
    info = read_info(folder)
    if info.task != "classification" or info.architecture not in ("hf", "hf_mean_pool"):
        raise ModelError(
            f"model {info.name} ({info.task}, {info.architecture}) has no transformer encoder to embed with",
            hint="use a classifier fine-tuned from a pretrained encoder (model kind: pretrained)",
        )
    module: Any = load_model_folder(folder).module
    found: nn.Module = module.encoder if info.architecture == "hf_mean_pool" else module.base_model
    return found


def build_encoder(spec: EncoderSpec) -> tuple[SentenceEncoder, TokenizerFeaturizer]:
    """The sentence encoder and tokenizer ``spec`` starts from (a checkpoint, or a classifier's encoder)."""
    folder = source_folder(spec.name_or_path)
    if folder is None:
        module: Any = encoder(spec, [], None)
        return module, spec.make_featurizer()
    local = spec.model_copy(update={"name_or_path": str(folder)})
    return SentenceEncoder(classifier_encoder(folder), spec.pooling, spec.normalize), local.make_featurizer()


def model_info(
    spec: EncoderSpec, module: SentenceEncoder, featurizer: Any, common: Mapping[str, Any]
) -> ModelInfo:
    settings = EmbeddingSettings(
        dimensions=module.dimensions,
        pooling=spec.pooling,
        normalize=spec.normalize,
        max_tokens=spec.max_tokens,
        truncation=spec.truncation,
    )
    return ModelInfo.model_validate(
        {
            **common,
            "task": NAME,
            "architecture": "encoder",
            "labels": [],
            "preprocessing": featurizer.preprocessing(),
            "base_model": spec.name_or_path,
            "embedding": settings.as_dict(),
        }
    )


# ---------------------------------------------------------------- training
def ranking_loss(anchor: torch.Tensor, candidates: torch.Tensor, scale: float) -> torch.Tensor:
    """MultipleNegativesRankingLoss: row i of ``anchor`` (B, D) must pick candidate i of (B + K, D)."""
    sims = nn.functional.normalize(anchor, dim=-1) @ nn.functional.normalize(candidates, dim=-1).T
    return nn.functional.cross_entropy(scale * sims, torch.arange(len(anchor), device=anchor.device))


class PairModel(nn.Module):
    """The sentence encoder during training: embeds inputs, targets (and negatives), returns the loss."""

    def __init__(self, sentence_encoder: SentenceEncoder, scale: float) -> None:
        super().__init__()
        self.sentence_encoder = sentence_encoder
        self.config = sentence_encoder.config
        self.scale = scale

    def embed(self, batch: Mapping[str, Any], prefix: str = "") -> torch.Tensor:
        keys = ("input_ids", "attention_mask", "token_type_ids")
        inputs = {k: batch[prefix + k] for k in keys if prefix + k in batch}
        return self.sentence_encoder(**inputs)["logits"]

    def forward(self, labels: torch.Tensor | None = None, **batch: Any) -> dict[str, torch.Tensor]:
        anchor, positive = self.embed(batch), self.embed(batch, "target_")
        candidates = positive
        if "negative_input_ids" in batch:
            candidates = torch.cat([positive, self.embed(batch, "negative_")])
        return {"loss": ranking_loss(anchor, candidates, self.scale), "anchor": anchor, "positive": positive}


def pair_frame(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows as (input, target[, negative]) text; an empty input or target is a DataError."""
    for column in ("input", "target"):
        empty = frame[column].astype(str).str.strip() == ""
        if empty.any():
            raise DataError(
                f"{split} split: {int(empty.sum())} row(s) have an empty {column}; embedding pairs need both",
                hint="clean the dataset (clean.min_chars) or drop those rows",
            )
    return frame


class EmbeddingRecipe:
    """One training run: the pair model, tokenized pairs, the loss and the retrieval metrics."""

    compute_loss = None  # the pair model computes its own loss

    def __init__(self, config: EmbeddingConfig, frames: Mapping[str, pd.DataFrame]) -> None:
        self.spec = config.model
        module, self.featurizer = build_encoder(config.model)
        self.model: Any = PairModel(module, config.loss_scale)
        self.train_examples = self.examples(pair_frame(frames["train"], "train"))
        self.eval_examples = self.examples(pair_frame(frames["validation"], "validation"), negatives=False)

    def encode(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Training pairs (``input``, ``target``, optional negatives) → per-example features."""
        return self.examples(pair_frame(frame, "train"))

    def examples(self, frame: pd.DataFrame, negatives: bool = True) -> list[dict[str, Any]]:
        anchors = self.featurizer.encode(frame["input"].astype(str).tolist())
        sides: dict[str, list[dict[str, Any] | None]] = {
            "target_": list(self.featurizer.encode(frame["target"].astype(str).tolist()))
        }
        if negatives and NEGATIVE in frame.columns:
            texts = frame[NEGATIVE].fillna("").astype(str).tolist()
            encoded = self.featurizer.encode([t or "-" for t in texts])
            sides["negative_"] = [e if t.strip() else None for e, t in zip(encoded, texts, strict=True)]
        for i, feature in enumerate(anchors):
            for prefix, side in sides.items():
                other = side[i]
                if other is not None:
                    feature.update({prefix + k: v for k, v in other.items()})
        return anchors

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Inputs, targets and (when every row has one) negatives, each padded to its own longest."""
        batch: dict[str, Any] = {}
        prefixes = ["", "target_"] + (
            ["negative_"] if all("negative_input_ids" in f for f in features) else []
        )
        for prefix in prefixes:
            side = [{k[len(prefix) :]: v for k, v in f.items() if _side(k) == prefix} for f in features]
            batch.update({prefix + k: v for k, v in self.featurizer.collate(side).items()})
        batch["labels"] = torch.arange(len(features))  # input i's target is candidate i
        return batch

    def compute_metrics(self, prediction: Any) -> dict[str, float]:
        anchor, positive = prediction.predictions
        gold = np.arange(len(anchor))
        return rank_candidates(np.asarray(anchor), np.asarray(positive), gold).metrics()

    def train_context(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def save(self, folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        module = self.model.sentence_encoder if isinstance(self.model, PairModel) else self.model
        info = model_info(self.spec, module, self.featurizer, common)
        save_model_folder(folder, module, self.featurizer, self.spec, info)
        return info


def _side(key: str) -> str:
    for prefix in ("target_", "negative_"):
        if key.startswith(prefix):
            return prefix
    return ""


# ---------------------------------------------------------------- evaluation
class EmbeddingEvaluation:
    """Retrieval scores on a split, with the worst-ranked rows for the report."""

    def __init__(
        self, metrics: dict[str, float], frame: pd.DataFrame, candidates: list[str], found: Retrieval
    ) -> None:
        self.metrics = metrics
        self.count = len(frame)
        self.candidates = len(candidates)
        worst = np.argsort(-found.ranks, kind="stable")[:10]
        self.misses: list[dict[str, Any]] = [
            {
                "input": str(frame["input"].iloc[i]),
                "target": str(frame["target"].iloc[i]),
                "rank": int(found.ranks[i]),
                "retrieved": candidates[int(found.best[i])],
            }
            for i in worst
            if found.ranks[i] > 1
        ]

    def write(
        self, out_dir: Path, context: Mapping[str, Any], history: Sequence[dict[str, Any]] | None = None
    ) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        facts = {**context, "count": self.count, "candidates": self.candidates, "metrics": self.metrics}
        atomic_write_json(out_dir / "metrics.json", {**facts, "misses": self.misses})
        rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in self.metrics.items())
        misses = "\n".join(
            f"| {_cell(m['input'])} | {_cell(m['target'])} | {m['rank']} | {_cell(m['retrieved'])} |"
            for m in self.misses
        )
        text = (
            f"# Evaluation: {context.get('model', '')}\n\n{self.count} inputs, each ranked against "
            f"{self.candidates} candidates (every distinct target and negative of the split).\n\n"
            f"| metric | value |\n|---|---|\n{rows}\n"
        )
        if misses:
            head = "| input | target | rank | ranked first |\n|---|---|---|---|"
            text += f"\n## Worst ranked\n\n{head}\n{misses}\n"
        atomic_write_text(out_dir / "report.md", text)
        return out_dir


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:120]


def candidate_texts(frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Distinct targets (then negatives) of a split, and each row's target index among them."""
    index: dict[str, int] = {}
    for text in frame["target"].astype(str):
        index.setdefault(text, len(index))
    if NEGATIVE in frame.columns:
        for text in frame[NEGATIVE].fillna("").astype(str):
            if text.strip():
                index.setdefault(text, len(index))
    gold = np.array([index[t] for t in frame["target"].astype(str)], dtype=np.int64)
    return list(index), gold


def embed_in_batches(embedder: Embedder, texts: list[str], batch_size: int) -> np.ndarray:
    parts = [embedder.embed(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dimensions), dtype=np.float32)


# ---------------------------------------------------------------- the task
class EmbeddingTask:
    """Task ``embedding`` (see the module docstring)."""

    name = NAME
    config = EmbeddingConfig
    predict_batch_cap = None
    card = CARD
    monitored = False  # no drift window nor prediction store for vectors yet
    optimize = OptimizeSupport(
        family="probabilities",
        onnx=True,
        int8=True,
        calibration=True,
        prune_methods=("global_unstructured",),
        quality_metric="mrr",
        outputs="vectors",
    )

    def labels(self, config: Any, frames: Mapping[str, pd.DataFrame]) -> list[str]:
        for split, frame in frames.items():
            pair_frame(frame, split)
        return []

    def check_config(self, config: Any, labels: Sequence[str]) -> None:
        wanted = config.metric_for_best.removeprefix("eval_")
        if wanted not in {"loss", *METRICS}:
            raise ConfigError(
                f"metric_for_best: {wanted!r} is not a validation metric of embedding models",
                hint=f"use loss, {', '.join(METRICS)}",
            )

    def augment(self, config: Any, frame: pd.DataFrame, *, seed: int | None = None) -> pd.DataFrame:
        return frame  # pairs are trained as they are

    def recipe(self, context: TrainingContext) -> EmbeddingRecipe:
        return EmbeddingRecipe(context.config, {**context.frames, "train": context.train_frame})

    def test_options(self, config: Any) -> EvaluateOptions:
        return EvaluateOptions(batch_size=64)

    def describe(self, config: Any) -> dict[str, str]:
        return {"miniml.model_kind": "encoder", "miniml.base_model": config.model.name_or_path}

    def import_model(self, settings: Mapping[str, Any], folder: Path, common: Mapping[str, Any]) -> ModelInfo:
        """Write ``folder`` from an encoder spec (``name_or_path`` and other ``model:`` keys), untrained."""
        spec = _spec(settings)
        module, featurizer = build_encoder(spec)
        info = model_info(spec, module.eval(), featurizer, common)
        save_model_folder(folder, module, featurizer, spec, info)
        return info

    # ---------------------------------------------------------------- inference
    def load(self, folder: Path, info: ModelInfo, *, device: str | None, threads: int | None) -> Embedder:
        return Embedder(open_runtime(info.runtime, folder, info, device=device, threads=threads), info)

    def evaluate(
        self, model: LoadedModel, frame: pd.DataFrame, options: EvaluateOptions
    ) -> EmbeddingEvaluation:
        """Retrieve each input's target among the split's candidates (see the module docstring)."""
        frame = pair_frame(frame.head(options.limit) if options.limit else frame, options.source)
        embedder: Embedder = model.predictor
        candidates, gold = candidate_texts(frame)
        queries = embed_in_batches(embedder, frame["input"].astype(str).tolist(), options.batch_size)
        if options.progress is not None:
            options.progress(len(frame))
        found = rank_candidates(queries, embed_in_batches(embedder, candidates, options.batch_size), gold)
        return EmbeddingEvaluation(found.metrics(), frame, candidates, found)

    def predict(
        self, model: LoadedModel, texts: list[str], *, top_k: int | None = None
    ) -> list[dict[str, Any]]:
        embedder: Embedder = model.predictor
        tokens = check_texts(embedder, texts)
        vectors = embedder.embed(texts)
        if not np.isfinite(vectors).all():
            raise ModelError(f"model {model.name}: embeddings are not finite", hint="retrain or restore it")
        return [{"embedding": v.tolist(), "tokens": n} for v, n in zip(vectors, tokens, strict=True)]

    # ---------------------------------------------------------------- serving
    def handler(self, batching: Any) -> EmbeddingHandler:
        return EmbeddingHandler()

    def serve_workers(self, requested: int) -> int:
        return requested


def _spec(settings: Mapping[str, Any]) -> EncoderSpec:
    try:
        return EncoderSpec.model_validate({"kind": "encoder", **settings})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "of the encoder")) from None

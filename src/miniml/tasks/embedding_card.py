"""What the model card of an embedding model says (``EmbeddingTask.card``, see :mod:`miniml.modelcard`)."""

from __future__ import annotations

from miniml.modelcard import CardText
from miniml.modelfolder import ModelInfo


def what_it_does(info: ModelInfo) -> list[str]:
    e: dict = getattr(info, "embedding", None) or {}
    unit = " of unit length (a dot product is the cosine similarity)" if e.get("normalize") else ""
    return [
        f"Turns a text of at most {e.get('max_tokens', '?')} tokens into a vector of "
        f"{e.get('dimensions', '?')} numbers{unit}: texts that mean the same get close vectors."
    ]


def architecture(info: ModelInfo) -> str:
    pooling = (getattr(info, "embedding", None) or {}).get("pooling", "mean")
    return f"`{info.architecture}`: a pretrained transformer encoder with {pooling} pooling"


def how_to_use(info: ModelInfo) -> list[str]:
    return [
        "Python: `miniml.tasks.load_model(folder).predictor.embed(texts)`; HTTP: `POST /v1/embeddings` "
        "(OpenAI's shape)."
    ]


def intended_use(info: ModelInfo, like: str) -> list[str]:
    return [f"Search, deduplication and the semantic cache over {like}."]


def known_limits(info: ModelInfo) -> list[str]:
    return [
        "- Longer inputs than its token cap are refused, never cut.",
        "- Close vectors do not prove the same meaning: a changed name or number can stay close.",
    ]


CARD = CardText(
    words="Sentence embeddings",
    pipeline_tag="sentence-similarity",
    what_it_does=what_it_does,
    architecture=architecture,
    how_to_use=how_to_use,
    intended_use=intended_use,
    known_limits=known_limits,
)

"""What the model card of a generative model says (``seq2seq`` / ``causal_lm``; see :mod:`miniml.modelcard`):
the prompt format lives in ``miniml.json``, generated text is not checked."""

from __future__ import annotations

from miniml.modelcard import CardText
from miniml.modelfolder import ModelInfo


def what_it_does(info: ModelInfo) -> list[str]:
    return [
        "Continues a prompt with generated text; the prompt format is in `miniml.json` "
        "(`preprocessing`), applied by miniml the same way in training and serving."
    ]


def architecture(info: ModelInfo) -> str:
    return f"`{info.architecture}`: a Hugging Face {info.task} model"


def how_to_use(info: ModelInfo) -> list[str]:
    return ["Python: `miniml.tasks.load_generator(folder)`; HTTP: `POST /v1/models/NAME/generate`."]


def intended_use(info: ModelInfo, like: str) -> list[str]:
    return [f"Generating answers for prompts built like its training prompts, on {like}."]


def known_limits(info: ModelInfo) -> list[str]:
    return ["- Generated text is not checked for correctness; judge it before you act on it."]


def card_text(words: str, pipeline_tag: str) -> CardText:
    """The card text of a generative task (``words``: the summary's first words)."""
    return CardText(
        words=words,
        pipeline_tag=pipeline_tag,
        what_it_does=what_it_does,
        architecture=architecture,
        how_to_use=how_to_use,
        intended_use=intended_use,
        known_limits=known_limits,
    )

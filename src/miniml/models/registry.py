"""The builder registry: model architectures are named builder functions, not if/else chains.

A builder takes its validated spec (a pydantic model from the train config), the label names and the
featurizer the spec made, and returns an ``nn.Module`` whose ``forward(**batch, labels=None)`` returns
``{"loss", "logits"}`` — the one interface the training engine, evaluation and inference rely on::

    @register_builder("hashing_bag")
    def hashing_bag(spec: HashingBagSpec, labels: list[str], featurizer: Featurizer, *, source: Path | None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from miniml.errors import ModelError

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register_builder(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``fn`` the builder of architecture ``name``."""

    def wrap(fn: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"builder {name!r} registered twice")
        _BUILDERS[name] = fn
        return fn

    return wrap


def get_builder(name: str) -> Builder:
    """The builder registered as ``name``; a ModelError listing the known ones otherwise."""
    import miniml.models  # noqa: F401  (registers the built-in builders)

    if name not in _BUILDERS:
        raise ModelError(f"unknown model architecture {name!r}", hint=f"known: {', '.join(builder_names())}")
    return _BUILDERS[name]


def builder_names() -> list[str]:
    return sorted(_BUILDERS)


def classification_output(logits: Any, labels: Any, label_smoothing: float = 0.0) -> dict[str, Any]:
    """The ``{"loss", "logits"}`` dict every builder's module returns (loss only when labels are given)."""
    out: dict[str, Any] = {"logits": logits}
    if labels is not None:
        out["loss"] = nn.functional.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return out

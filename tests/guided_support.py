"""Tokenizers and a seeded random walk shared by the guided-decoding tests."""

from __future__ import annotations

import functools
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

import tiny_generative as tg
from miniml.guided.compiler import CompiledConstraint, GuidedCompiler
from miniml.guided.mask import GuidedRows
from miniml.guided.vocab import vocabulary
from miniml.models.hf import resolve_reference


@functools.cache
def byte_level() -> tuple[Any, GuidedCompiler]:
    """The tiny test models' byte-level BPE (spells any text)."""
    tok = PreTrainedTokenizerFast.from_pretrained(str(tg.model_path("gpt2")))
    return tok, GuidedCompiler(tok, vocabulary(tok, [tg.EOS]))


@functools.cache
def wordpiece() -> tuple[Any, GuidedCompiler]:
    """MiniLM's uncased WordPiece (the text2sql and lora examples' tokenizer)."""
    tok = AutoTokenizer.from_pretrained(resolve_reference("minilm"))
    return tok, GuidedCompiler(tok, vocabulary(tok, [tok.sep_token_id]))


def walk(
    compiler: GuidedCompiler, compiled: CompiledConstraint, seed: int, steps: int = 80
) -> tuple[str, bool]:
    """Follow the mask with seeded random logits until an end token: (text, grammar complete)."""
    end = compiler.vocab.end_ids[0]
    rows = GuidedRows([compiled.matcher()], compiler.vocab.size, [end])
    gen = torch.Generator().manual_seed(seed)
    tokens: list[int] = []
    for _ in range(steps):
        logits = torch.randn(1, compiler.vocab.size, generator=gen) * 4
        rows.mask(logits)
        token = int(logits[0].argmax())
        if token == end:
            return compiler.surface_text(tokens), rows.complete(0)
        tokens.append(token)
        rows.advance(0, token)
    return compiler.surface_text(tokens), False

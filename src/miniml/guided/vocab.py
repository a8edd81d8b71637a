"""What text each token of a tokenizer writes: the vocabulary a grammar engine masks.

A grammar engine needs, for every token id, the bytes that token adds to the answer. Byte-level BPE
(GPT-2, the test tokenizers) and SentencePiece with byte fallback spell any text exactly: each token's bytes
are read off its decoder. A WordPiece tokenizer (BERT, MiniLM) cannot: it writes words separated by spaces,
punctuation as words of its own, and — when its normaliser lower-cases — lower case only. Its tokens are
given the text they add to that spaced form (``##ing`` → ``ing``, ``select`` → `` select``), so a grammar
written with optional whitespace between words (Lark ``%ignore``) and case-insensitive literals matches what
such a model can write; :attr:`Vocabulary.exact` says which kind a tokenizer is.

Special tokens (padding, start, mask, ...) get bytes no grammar can match; the end tokens are the ones a
grammar allows once it is satisfied.

One more WordPiece detail: such a vocabulary has no token for a lone space, so text a grammar forces that
ends in a space (``SELECT `` before a column) cannot be tokenized exactly, and llguidance's forced-token
shortcut then masks the wrong token (guidance-ai/llguidance#366). BERT's placeholder ``[unused0]`` stands
in for that space: it makes every forced text tokenizable, its bytes are what the grammar saw, and a
trained model gives it no weight, so it is next to never chosen.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from miniml.errors import ModelError

SPECIAL_MARKER = b"\xff"  # llguidance's marker for special tokens: never valid UTF-8, never matched
UNUSED = re.compile(r"^\[unused\d+\]$")  # BERT's placeholder tokens: never written


@dataclass(frozen=True)
class Vocabulary:
    """Token bytes of a tokenizer, as a grammar engine sees them."""

    tokens: tuple[bytes, ...]
    end_ids: tuple[int, ...]
    special_ids: tuple[int, ...]
    kind: str  # "byte_level", "metaspace" or "wordpiece"
    exact: bool  # whether tokens spell any text exactly (else: the spaced form described above)
    lowercase: bool  # whether the tokenizer lower-cases its input (it can only write lower case)

    @property
    def size(self) -> int:
        return len(self.tokens)


@functools.lru_cache(maxsize=256)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte ↔ printable-character table, inverted."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(visible)
    extra = 0
    for byte in range(256):
        if byte not in visible:
            visible.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(visible, codes, strict=True)}


def _decoder_kinds(spec: dict[str, Any] | None) -> list[str]:
    if not spec:
        return []
    if spec.get("type") == "Sequence":
        return [k for d in spec.get("decoders", []) for k in _decoder_kinds(d)]
    return [str(spec.get("type"))]


def _lowercases(spec: dict[str, Any] | None) -> bool:
    if not spec:
        return False
    if spec.get("type") == "Sequence":
        return any(_lowercases(n) for n in spec.get("normalizers", []))
    return spec.get("type") == "Lowercase" or bool(
        spec.get("type") == "BertNormalizer" and spec.get("lowercase")
    )


def _byte_level(token: str) -> bytes:
    table = _byte_decoder()
    return bytes(table[c] for c in token) if all(c in table for c in token) else token.encode()


def _metaspace(token: str, replacement: str) -> bytes:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):  # byte fallback
        return bytes([int(token[3:5], 16)])
    return token.replace(replacement, " ").encode()


def _wordpiece(token: str, prefix: str) -> bytes:
    return token[len(prefix) :].encode() if token.startswith(prefix) else b" " + token.encode()


def vocabulary(tokenizer: Any, end_ids: Sequence[int], size: int | None = None) -> Vocabulary:
    """The vocabulary of a transformers fast tokenizer; ``size`` pads it to the model's logits width."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(
            "guided decoding needs a fast (Rust) tokenizer", hint="save the model with a tokenizer.json"
        )
    spec = json.loads(backend.to_str())
    kinds = _decoder_kinds(spec.get("decoder"))
    specials = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    specials |= {int(t["id"]) for t in spec.get("added_tokens", []) if t.get("special")}
    pieces = {int(i): str(t) for t, i in backend.get_vocab(with_added_tokens=True).items()}
    width = max(size or 0, max(pieces) + 1)
    if "ByteLevel" in kinds:
        kind, exact, spell = "byte_level", True, _byte_level
    elif "Metaspace" in kinds or "Replace" in kinds:
        replacement = _metaspace_char(spec.get("decoder"))
        kind, exact = "metaspace", "ByteFallback" in kinds
        spell = functools.partial(_metaspace, replacement=replacement)
    elif "WordPiece" in kinds:
        prefix = str((spec.get("decoder") or {}).get("prefix", "##"))
        kind, exact, spell = "wordpiece", False, functools.partial(_wordpiece, prefix=prefix)
    else:
        raise ModelError(
            f"guided decoding does not know this tokenizer's decoder ({', '.join(kinds) or 'none'})",
            hint="use a byte-level BPE, SentencePiece or WordPiece tokenizer",
        )
    space = None
    if kind == "wordpiece":
        unused = sorted(i for i, piece in pieces.items() if UNUSED.match(piece))
        space = unused[0] if unused else None
        specials |= set(unused[1:])
    tokens = []
    for i in range(width):
        piece = pieces.get(i)
        if i == space:
            tokens.append(b" ")
        elif piece is None or i in specials:
            tokens.append(SPECIAL_MARKER + f"[{piece or i}]".encode())
        else:
            tokens.append(spell(piece))
    ends = tuple(dict.fromkeys(int(e) for e in end_ids))
    return Vocabulary(
        tuple(tokens),
        ends,
        tuple(sorted(specials - set(ends))),
        kind,
        exact,
        _lowercases(spec.get("normalizer")),
    )


def _metaspace_char(spec: dict[str, Any] | None) -> str:
    for d in (spec or {}).get("decoders", [spec or {}]):
        if d.get("type") == "Metaspace":
            return str(d.get("replacement", "▁"))
        if d.get("type") == "Replace":
            return str((d.get("pattern") or {}).get("String", "▁"))
    return "▁"

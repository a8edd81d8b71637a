"""Literal text as a Lark expression a given tokenizer can actually write.

For tokenizers that spell any text (byte-level BPE, SentencePiece with byte fallback) a literal is one
quoted Lark string. A WordPiece tokenizer writes its normalised words, each after a space (``No. 5`` →
`` no . 5``, ``Jovanović`` → `` jovanovic`` for MiniLM, which lower-cases and strips accents), so there a
literal is those words joined by single spaces (the space before the first word is the grammar's to allow:
a leading ``" "?`` or ``%ignore " "``), and words it can only write as ``[UNK]`` are left out (it cannot
write them at all).
"""

from __future__ import annotations

import json
import re
from typing import Any

from miniml.guided.vocab import Vocabulary

WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # the words and marks exact-match scoring compares


def quoted(text: str) -> str:
    """A Lark string literal for ``text`` (JSON escaping is valid Lark escaping)."""
    return json.dumps(text, ensure_ascii=False)


class Speller:
    """Renders literals for one tokenizer (see the module docstring)."""

    def __init__(self, tokenizer: Any, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._normalizer = getattr(backend, "normalizer", None)
        self._pre_tokenizer = getattr(backend, "pre_tokenizer", None)
        unk = getattr(tokenizer, "unk_token_id", None)
        self._unk = int(unk) if unk is not None else None

    def words(self, text: str) -> list[str]:
        """The words this tokenizer would write for ``text`` (exact tokenizers: the text's own words)."""
        if self.vocab.exact:
            return WORD_RE.findall(text)
        if self._normalizer is not None:
            text = self._normalizer.normalize_str(text)
        pieces = (
            [w for w, _ in self._pre_tokenizer.pre_tokenize_str(text)]
            if self._pre_tokenizer is not None
            else WORD_RE.findall(text)
        )
        return [w for w in pieces if self._spellable(w)]

    def _spellable(self, word: str) -> bool:
        if self._unk is None:
            return True
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        return self._unk not in ids

    def literal(self, text: str) -> str | None:
        """A Lark expression writing ``text``; None when this tokenizer can write none of it."""
        if self.vocab.exact:
            return quoted(text) if text else None
        words = self.words(text)
        return quoted(" ".join(words)) if words else None


def alternatives(options: list[str]) -> str:
    """``(a | b | ...)`` of distinct Lark expressions, in first-seen order."""
    distinct = list(dict.fromkeys(options))
    return "(" + " | ".join(distinct) + ")"

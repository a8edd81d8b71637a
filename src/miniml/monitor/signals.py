"""Per-text signals a drift monitor compares: length, words, unknown words and the writing systems used.

The same functions run on the training data (the reference profile) and on live traffic (the window), so
both sides are measured identically:

- ``chars``: characters after NFC normalisation and stripping (what the server feeds the model);
- ``tokens``: words, i.e. runs of Unicode word characters (``\\w+``, lower-cased). Every model kind has
  words, whatever its own tokenizer; a model's sub-word tokens would make lengths incomparable between
  architectures of one name;
- ``oov``: words absent from the training split's vocabulary, held as a hashed bit set
  (:class:`Vocabulary`: CRC-32 of the word into 2^20 bits, 128 KiB; a collision can only make an unknown
  word look known, so the OOV rate is a slight under-estimate, equally for reference and traffic);
- ``scripts``: letters by writing system (Latin, Cyrillic, Greek, Arabic, Han, ...), from the first word of
  each letter's Unicode name, cached per character.
"""

from __future__ import annotations

import base64
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

WORD = re.compile(r"\w+")
VOCAB_BITS = 20  # 2^20 bits: a vocabulary of 100k words fills ~9% of them

# Unicode name prefixes → script; anything else with a letter category is "Other".
_SCRIPT_PREFIXES = {
    "LATIN": "Latin",
    "CYRILLIC": "Cyrillic",
    "GREEK": "Greek",
    "ARABIC": "Arabic",
    "HEBREW": "Hebrew",
    "CJK": "Han",
    "HIRAGANA": "Kana",
    "KATAKANA": "Kana",
    "HANGUL": "Hangul",
    "DEVANAGARI": "Devanagari",
    "BENGALI": "Bengali",
    "TAMIL": "Tamil",
    "THAI": "Thai",
    "GEORGIAN": "Georgian",
    "ARMENIAN": "Armenian",
    "ETHIOPIC": "Ethiopic",
}
_script_cache: dict[str, str | None] = {}


def normalize(text: str) -> str:
    """NFC and stripped: the form the server hands the model (and the cache keys on)."""
    return unicodedata.normalize("NFC", text).strip()


def script_of(char: str) -> str | None:
    """The writing system of a letter, or None for digits, punctuation, spaces and symbols."""
    cached = _script_cache.get(char, "")
    if cached != "":
        return cached
    script: str | None = None
    if unicodedata.category(char).startswith("L"):
        name = unicodedata.name(char, "")
        script = _SCRIPT_PREFIXES.get(name.split(" ", 1)[0], "Other")
    _script_cache[char] = script
    return script


def words(text: str) -> list[str]:
    """Lower-cased runs of word characters."""
    return WORD.findall(text.lower())


@dataclass
class Vocabulary:
    """A set of words as a hashed bit set (see the module docstring)."""

    bits: np.ndarray = field(default_factory=lambda: np.zeros(1 << VOCAB_BITS, dtype=bool))

    @staticmethod
    def slot(word: str) -> int:
        return zlib.crc32(word.encode("utf-8")) & ((1 << VOCAB_BITS) - 1)

    @classmethod
    def of(cls, texts: Iterable[str]) -> Vocabulary:
        bits = np.zeros(1 << VOCAB_BITS, dtype=bool)
        bits[list({cls.slot(w) for text in texts for w in words(normalize(text))})] = True
        return cls(bits)

    def __post_init__(self) -> None:
        self._table = self.bits.tobytes()  # one byte per slot: indexing bytes beats indexing numpy

    def unknown(self, tokens: Sequence[str]) -> int:
        """How many of ``tokens`` are not in the vocabulary."""
        table, mask, crc32 = self._table, (1 << VOCAB_BITS) - 1, zlib.crc32
        return sum(1 for w in tokens if not table[crc32(w.encode("utf-8")) & mask])

    def dumps(self) -> str:
        """base64 of the zlib-compressed packed bits (for ``reference.json``)."""
        return base64.b64encode(zlib.compress(np.packbits(self.bits).tobytes(), 9)).decode("ascii")

    @classmethod
    def loads(cls, data: str) -> Vocabulary:
        packed = np.frombuffer(zlib.decompress(base64.b64decode(data)), dtype=np.uint8)
        bits = np.unpackbits(packed).astype(bool)
        if bits.size != 1 << VOCAB_BITS:
            raise ValueError(f"vocabulary has {bits.size} bits, expected {1 << VOCAB_BITS}")
        return cls(bits)


@dataclass
class TextSignals:
    """Signals of a batch of texts: per-text lengths and unknown words, and letters per script."""

    chars: np.ndarray  # (N,) int
    tokens: np.ndarray  # (N,) int
    unknown: np.ndarray  # (N,) int: words not in the vocabulary
    scripts: Counter[str]

    @property
    def oov_rate(self) -> float:
        total = int(self.tokens.sum())
        return float(self.unknown.sum()) / total if total else 0.0


def text_signals(texts: Sequence[str], vocabulary: Vocabulary | None) -> TextSignals:
    """Measure ``texts`` (normalised first); ``unknown`` is all zeros without a vocabulary."""
    n = len(texts)
    chars = np.zeros(n, dtype=np.int64)
    tokens = np.zeros(n, dtype=np.int64)
    unknown = np.zeros(n, dtype=np.int64)
    normalized = [normalize(t) for t in texts]
    for i, text in enumerate(normalized):
        chars[i] = len(text)
        ws = words(text)
        tokens[i] = len(ws)
        if vocabulary is not None:
            unknown[i] = vocabulary.unknown(ws)
    letters = Counter("".join(normalized))  # one C-level pass over every character
    scripts: Counter[str] = Counter()
    for char, count in letters.items():
        script = script_of(char)
        if script is not None:
            scripts[script] += count
    return TextSignals(chars, tokens, unknown, scripts)

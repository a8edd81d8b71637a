"""Hashed character n-grams + word n-grams, featurized a whole batch at a time with numpy.

Hand-written because speed is the point (the nordic-langid target is ≤ 30 µs per sentence on one core,
featurization included) and no library does this batched: fastText hashes per word in C++, scikit-learn's
HashingVectorizer loops in Python per document.

The features of one text (all vectorized over the batch, no Python loop over n-grams):

1. Normalize: whitespace collapsed and trimmed, NFC, lower-cased (``lowercase``), cut to ``max_chars``.
2. Frame: ``S = char_max - 1`` sentinels (codepoint 0x110000, which no text can hold), a space, the text,
   a space: ``"∅∅∅∅ hej med dig "``. Spaces mark word boundaries; sentinels mark the text's start and end
   (like fastText's ``<`` ``>``).
3. Char n-grams: for every position of the framed text and every n in ``[char_min, char_max]``, the n
   characters starting there (past the end, the text is followed by S more sentinels). Word k-grams (k ≤
   ``word_ngrams``): runs of non-space characters, joined by single spaces.
4. Hash: the polynomial ``h = sum_j c[j] * P**(len-1-j) mod 2**64`` over the codepoints (P = the 64-bit FNV
   prime), times an odd multiplier per kind (``MIX ^ (kind * GOLDEN) | 1``, kind = n for char n-grams,
   100+k for word k-grams); the bucket is the high bits: ``((x >> 32) * buckets) >> 32`` (Lemire's
   multiply-shift; for a power-of-two ``buckets`` exactly ``x >> (64 - log2 buckets)``). uint64 wraps: that
   is the intended mod 2**64.

How it runs batched: the framed texts are joined (each text's S leading sentinels also end the text before
it) into one codepoint array. With odd P invertible mod 2**64 and prefix sums ``S[k] = sum_{j<k} c[j] *
Pinv**j``, every substring hash is ``P**(e-1) * (S[e] - S[s])`` — one multiply-subtract per n-gram, the same
wherever the text sits in the batch. A window of at most ``char_max`` characters never spans two texts, so
the (position, n) hash matrix needs no mask, and reading it row by row groups the ids by text.

The hash is fixed and documented here (not Python's salted ``hash``), so ids are stable across processes,
machines and Python versions; ``HASH_VERSION`` changes whenever they would.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from miniml.errors import ModelError
from miniml.io import atomic_write_json
from miniml.models.featurizer import FEATURIZER_FILE

HASH_VERSION = 2  # bump when ids change: models trained with another version must be retrained
_P = 0x100000001B3  # 64-bit FNV prime; odd, so invertible modulo 2**64
_P_INV = pow(_P, -1, 2**64)
_GOLDEN = 0x9E3779B97F4A7C15
_MIX = 0xBF58476D1CE4E5B9  # splitmix64's first multiplier
_SPACE = 32
_SENTINEL = 0x110000  # one past the last Unicode codepoint: no text contains it


def multipliers(kinds: Sequence[int]) -> np.ndarray:
    """The odd multiplier of each feature kind, ``MIX ^ (kind * GOLDEN mod 2**64) | 1``, as uint64."""
    return np.array([(_MIX ^ ((k * _GOLDEN) % 2**64)) | 1 for k in kinds], dtype=np.uint64)


def to_buckets(hashes: np.ndarray, mult: np.ndarray, buckets: int) -> np.ndarray:
    """``[0, buckets)`` ids from the high bits of ``hashes * mult`` (see the module docstring), int64."""
    x = hashes * mult
    if buckets > 1 and buckets & (buckets - 1) == 0:
        x >>= np.uint64(65 - buckets.bit_length())
    else:
        x >>= np.uint64(32)
        x *= np.uint64(buckets)
        x >>= np.uint64(32)
    return x.astype(np.int64)


class _Substrings:
    """O(1) polynomial hashes of any substring of one codepoint array (see the module docstring)."""

    def __init__(self, codes: np.ndarray, powers: tuple[np.ndarray, np.ndarray]) -> None:
        n = len(codes)
        self.pows = powers[0]  # pows[k] = P**k
        self.prefix = np.zeros(n + 1, dtype=np.uint64)  # prefix[k] = sum_{j<k} c[j] * Pinv**j
        np.cumsum(codes.astype(np.uint64) * powers[1][:n], out=self.prefix[1:])

    def hash(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Hashes of ``codes[start:end]`` for arrays of start/end positions (end > start)."""
        return self.pows[end - 1] * (self.prefix[end] - self.prefix[start])


class HashingFeaturizer:
    """Character n-grams (with word-boundary spaces) + word n-grams hashed into ``buckets`` ids."""

    kind = "hashing"

    def __init__(
        self,
        *,
        buckets: int = 262144,
        char_ngrams: tuple[int, int] = (1, 5),
        word_ngrams: int = 2,
        lowercase: bool = True,
        max_chars: int = 1000,
    ) -> None:
        self.buckets = int(buckets)
        self.char_min, self.char_max = int(char_ngrams[0]), int(char_ngrams[1])
        self.word_ngrams = int(word_ngrams)
        self.lowercase = lowercase
        self.max_chars = int(max_chars)
        self._char_mult = multipliers(range(self.char_min, self.char_max + 1))[None, :]  # (1, n sizes)
        self._word_mult = multipliers(range(101, 101 + self.word_ngrams))
        self._pow_cache: tuple[np.ndarray, np.ndarray] = (np.ones(1, dtype=np.uint64),) * 2

    # ---------------------------------------------------------------- batch featurization
    def ids_and_offsets(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts at once → (flat bucket ids grouped by text, start offset of each text), int64.

        Each text's block holds its char n-grams (by position, then n) followed by its word k-grams.
        """
        parts = self._normalize(texts)
        pad = self.char_max - 1
        frame = "\x00" * pad
        joined = frame + "".join([f" {p} {frame}" for p in parts])
        raw = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        codes = np.where(raw == 0, np.uint32(_SENTINEL), raw)  # NULs (texts have none left) → sentinel
        rows = np.fromiter((len(p) + 2 + pad for p in parts), dtype=np.int64, count=len(parts))  # per text
        subs = _Substrings(codes, self._powers(len(codes)))
        char_ids = self._char_ngrams(subs, int(rows.sum()))  # (positions, n sizes)
        word_ids, word_counts = self._word_ngrams(codes, subs, rows)
        return self._merge(char_ids, rows, word_ids, word_counts)

    def _normalize(self, texts: Sequence[str]) -> list[str]:
        """``normalize_text`` of each text, cut to ``max_chars``; NFC and lower-case run once per batch.

        NUL (which texts may not contain: it becomes a space) is a starter no composition crosses and is not
        cased, so normalizing the NUL-joined batch equals normalizing each text alone.
        """
        if not texts:
            return []
        texts = [t.replace("\x00", " ") if "\x00" in t else t for t in texts]
        joined = unicodedata.normalize("NFC", "\x00".join([" ".join(t.split()) for t in texts]))
        parts = (joined.lower() if self.lowercase else joined).split("\x00")
        if any(len(p) > self.max_chars for p in parts):
            parts = [p[: self.max_chars] for p in parts]
        return parts

    def _powers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``P**k`` and ``Pinv**k`` for k ≤ n, grown on demand and cached (read-only, so thread-safe)."""
        cached = self._pow_cache
        if len(cached[0]) <= n:
            size = max(n + 1, 2 * len(cached[0]))
            pows = np.ones(size, dtype=np.uint64)
            inv = np.ones(size, dtype=np.uint64)
            pows[1:] = np.cumprod(np.full(size - 1, _P, dtype=np.uint64))
            inv[1:] = np.cumprod(np.full(size - 1, _P_INV, dtype=np.uint64))
            cached = self._pow_cache = (pows, inv)
        return cached

    def _char_ngrams(self, subs: _Substrings, positions: int) -> np.ndarray:
        """(positions, n sizes) bucket ids: row i holds the n-grams starting at position i."""
        sizes = range(self.char_min, self.char_max + 1)
        hashes = np.empty((positions, len(sizes)), dtype=np.uint64)
        for k, n in enumerate(sizes):  # windows [i, i + n); the last ends inside the final sentinels
            hashes[:, k] = subs.pows[n - 1 : positions + n - 1] * (
                subs.prefix[n : positions + n] - subs.prefix[:positions]
            )
        return to_buckets(hashes, self._char_mult, self.buckets)

    def _word_ngrams(
        self, codes: np.ndarray, subs: _Substrings, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Word k-gram ids grouped by text (by position, then k), and how many each text has."""
        boundary = (codes == _SPACE) | (codes == _SENTINEL)
        starts = np.flatnonzero(~boundary[1:] & boundary[:-1]) + 1  # words never touch a text's edge
        ends = np.flatnonzero(~boundary[:-1] & boundary[1:]) + 1
        owner = np.searchsorted(np.cumsum(rows), starts, side="right")  # text t owns [cum[t-1], cum[t])
        hashes = np.empty((len(starts), max(self.word_ngrams, 1)), dtype=np.uint64)
        valid = np.zeros(hashes.shape, dtype=bool)
        for k in range(1, self.word_ngrams + 1):
            m = len(starts) - k + 1
            if m > 0:
                hashes[:m, k - 1] = subs.hash(starts[:m], ends[k - 1 :])
                valid[:m, k - 1] = owner[:m] == owner[k - 1 :]
        ids = to_buckets(hashes[:, : self.word_ngrams], self._word_mult[None, :], self.buckets)
        mask = valid[:, : self.word_ngrams]
        per_text = np.bincount(owner, weights=mask.sum(axis=1), minlength=len(rows)).astype(np.int64)
        return ids[mask], per_text

    def _merge(
        self, char_ids: np.ndarray, rows: np.ndarray, word_ids: np.ndarray, word_counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One flat id array with each text's char block then word block, and the text offsets."""
        char_counts = rows * char_ids.shape[1]
        counts = char_counts + word_counts
        offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        if not self.word_ngrams:
            return char_ids.reshape(-1), offsets
        # Scatter both blocks into place: char element i of text t lands at i + (word ids of texts < t),
        # word element j of text t at j + (char ids of texts <= t). No Python loop over texts.
        words_before = np.cumsum(word_counts) - word_counts
        chars_through = np.cumsum(char_counts)
        merged = np.empty(int(counts.sum()), dtype=np.int64)
        chars = char_ids.reshape(-1)
        merged[np.arange(len(chars)) + np.repeat(words_before, char_counts)] = chars
        merged[np.arange(len(word_ids)) + np.repeat(chars_through, word_counts)] = word_ids
        return merged, offsets

    # ---------------------------------------------------------------- Featurizer protocol
    def encode(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        ids, offsets = self.ids_and_offsets(texts)
        return [{"input_ids": part} for part in np.split(ids, offsets[1:])]

    def collate(self, features: Sequence[Mapping[str, Any]], *, pad_to_max: bool = False) -> dict[str, Any]:
        # EmbeddingBag takes ragged input as flat ids + offsets: nothing to pad (pad_to_max is moot)
        parts = [np.asarray(f["input_ids"], dtype=np.int64) for f in features]
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        offsets = np.zeros(len(parts), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return {"input_ids": torch.from_numpy(flat), "offsets": torch.from_numpy(offsets)}

    def batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids, offsets = self.ids_and_offsets(texts)
        return {"input_ids": torch.from_numpy(ids), "offsets": torch.from_numpy(offsets)}

    def preprocessing(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hash_version": HASH_VERSION,
            "buckets": self.buckets,
            "char_ngrams": [self.char_min, self.char_max],
            "word_ngrams": self.word_ngrams,
            "lowercase": self.lowercase,
            "max_chars": self.max_chars,
            "normalize": "NFC, whitespace collapsed",
        }

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / FEATURIZER_FILE, self.preprocessing())


class HashingSettings(BaseModel):
    """What ``featurizer.json`` of a hashing model may say: the ranges ``HashingBagSpec`` allows."""

    model_config = ConfigDict(extra="ignore")

    hash_version: int
    buckets: int = Field(ge=1024, le=2**31)
    char_ngrams: tuple[int, int]
    word_ngrams: int = Field(ge=0, le=4)
    lowercase: bool
    max_chars: int = Field(ge=1, le=1_000_000)

    @field_validator("char_ngrams")
    @classmethod
    def _check_ngrams(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1] <= 8:
            raise ValueError("must be [low, high] with 1 <= low <= high <= 8")
        return value


def load_hashing(folder: Path, preprocessing: dict[str, Any]) -> HashingFeaturizer:
    """Rebuild a HashingFeaturizer from ``featurizer.json`` (falling back to ``miniml.json`` settings)."""
    file = Path(folder) / FEATURIZER_FILE
    raw = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else preprocessing
    if not isinstance(raw, dict) or raw.get("hash_version") != HASH_VERSION:
        found = raw.get("hash_version") if isinstance(raw, dict) else None
        raise ModelError(
            f"model folder {folder} was featurized with hash version {found}, "
            f"this miniml computes version {HASH_VERSION}",
            hint="retrain the model with this miniml version",
        )
    try:
        settings = HashingSettings.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ModelError(
            f"{file}: {where}: {first['msg']} (got {first.get('input')!r})",
            hint="the featurizer settings are damaged: restore the folder",
        ) from None
    return HashingFeaturizer(
        buckets=settings.buckets,
        char_ngrams=settings.char_ngrams,
        word_ngrams=settings.word_ngrams,
        lowercase=settings.lowercase,
        max_chars=settings.max_chars,
    )

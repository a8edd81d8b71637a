"""Hashed character n-grams + word n-grams, featurized a whole batch at a time with numpy.

Hand-written because speed is the point (the nordic-langid target is ≤ 30 µs per sentence on one core,
featurization included) and no library does this batched: fastText hashes per word in C++, scikit-learn's
HashingVectorizer loops in Python per document and uses salted-free MurmurHash on str objects.

How (all vectorized over the batch, no Python loop over n-grams):

1. Each text is normalized (NFC, whitespace collapsed, lower-cased, truncated to ``max_chars``) and framed by
   spaces, which act as word-boundary markers: ``" hej med dig "``. The batch is joined into one string and
   viewed as a uint32 codepoint array ``c`` with a segment id per position.
2. Polynomial hash of any substring ``c[s:e]`` is ``sum_j c[j] * P**(e-1-j) mod 2**64``. With odd ``P`` (the
   64-bit FNV prime) it has an inverse mod 2**64, so with the prefix sums ``S[k] = sum_{j<k} c[j] * Pinv**j``
   every substring hash is ``P**(e-1) * (S[e] - S[s])``: one multiply per n-gram, independent of where the
   text sits in the batch (so batch featurization equals per-sentence featurization exactly).
3. Char n-grams of each length n in ``[char_min, char_max]`` are all windows ``[i, i+n)`` whose first and last
   positions lie in the same text. Word unigrams / bigrams are the substrings between spaces.
4. Each hash is salted by its kind (n for char n-grams, 100+k for word k-grams), mixed with the
   splitmix64 multipliers and mapped to ``[0, buckets)`` by Lemire's multiply-shift on its high 32 bits.
   uint64 arithmetic wraps, which is the intended mod 2**64.

The hash is fixed and documented here (not Python's salted ``hash``), so ids are stable across processes,
machines and versions of Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miniml.io import atomic_write_json
from miniml.models.featurizer import FEATURIZER_FILE, normalize_text, register_featurizer

HASH_VERSION = 1
_P = 0x100000001B3  # 64-bit FNV prime; odd, so invertible modulo 2**64
_P_INV = pow(_P, -1, 2**64)
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SPACE = 32


def _salts(salts: Sequence[int]) -> np.ndarray:
    """Per-kind salts ``salt * golden mod 2**64`` as a uint64 array (Python ints: no overflow warnings)."""
    return np.array([(s * _GOLDEN) % 2**64 for s in salts], dtype=np.uint64)


def _mix_to_buckets(x: np.ndarray, buckets: int) -> np.ndarray:
    """Mix salted hashes (multiply rounds of the splitmix64 finalizer) and map them to ``[0, buckets)``.

    The range reduction is Lemire's multiply-shift on the high 32 bits (no division, any bucket count).
    """
    x = x * _MIX1
    x ^= x >> np.uint64(29)
    x *= _MIX2
    return (((x >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32)).astype(np.int64)


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
        kinds = [*range(self.char_min, self.char_max + 1), *range(101, 101 + self.word_ngrams)]
        self._salts = _salts(kinds)[None, :]  # (1, kinds): char n-grams salted by n, word k-grams by 100+k
        self._pow_cache: tuple[np.ndarray, np.ndarray] = (np.ones(1, dtype=np.uint64),) * 2

    # ---------------------------------------------------------------- batch featurization
    def ids_and_offsets(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts at once → (flat bucket ids grouped by text, start offset of each text), int64.

        Every n-gram is a cell of one (position, kind) matrix: row = where it starts, column = char n-gram
        length or word k-gram order. Reading the valid cells row by row groups them by text with no sort.
        """
        framed = [" " + normalize_text(t, lowercase=self.lowercase)[: self.max_chars] + " " for t in texts]
        codes = np.frombuffer("".join(framed).encode("utf-32-le"), dtype=np.uint32)
        lengths = np.fromiter((len(f) for f in framed), dtype=np.int64, count=len(framed))
        seg = np.repeat(np.arange(len(framed), dtype=np.int64), lengths)
        sizes = range(self.char_min, self.char_max + 1)
        hashes = np.zeros((len(codes), len(sizes) + self.word_ngrams), dtype=np.uint64)  # (L, kinds)
        valid = np.zeros(hashes.shape, dtype=bool)
        subs = _Substrings(codes, self._powers(len(codes)))
        self._char_ngrams(codes, seg, subs, hashes[:, : len(sizes)], valid[:, : len(sizes)])
        self._word_ngrams(codes, seg, subs, hashes[:, len(sizes) :], valid[:, len(sizes) :])
        ids = _mix_to_buckets((hashes + self._salts)[valid], self.buckets)
        text_starts = np.zeros(len(framed), dtype=np.int64)
        np.cumsum(lengths[:-1], out=text_starts[1:])
        counts = np.add.reduceat(valid.sum(axis=1), text_starts) if len(framed) else text_starts
        offsets = np.zeros(len(framed), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        return ids, offsets

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

    def _char_ngrams(
        self, codes: np.ndarray, seg: np.ndarray, subs: _Substrings, hashes: np.ndarray, valid: np.ndarray
    ) -> None:
        """Fill column k with hashes of the char n-grams of length ``char_min + k`` starting at each row."""
        total = len(codes)
        for k, n in enumerate(range(self.char_min, self.char_max + 1)):
            m = total - n + 1  # windows [i, i+n) for i < m
            if m <= 0:
                break
            hashes[:m, k] = subs.pows[n - 1 : total] * (subs.prefix[n : total + 1] - subs.prefix[:m])
            valid[:m, k] = seg[:m] == seg[n - 1 :]  # the window stays inside one text
        if self.char_min == 1:  # a lone boundary space says nothing
            valid[:, 0] &= codes != _SPACE

    def _word_ngrams(
        self, codes: np.ndarray, seg: np.ndarray, subs: _Substrings, hashes: np.ndarray, valid: np.ndarray
    ) -> None:
        """Fill column k-1 with hashes of the word k-grams starting at each word-start row."""
        is_space = codes == _SPACE
        # every framed text starts and ends with a space, so words never cross texts
        starts = np.flatnonzero(~is_space[1:] & is_space[:-1]) + 1
        ends = np.flatnonzero(~is_space[:-1] & is_space[1:]) + 1
        for k in range(1, self.word_ngrams + 1):
            m = len(starts) - k + 1
            if m <= 0:
                break
            first, last = starts[:m], ends[k - 1 :]
            hashes[first, k - 1] = subs.hash(first, last)
            valid[first, k - 1] = seg[first] == seg[last - 1]

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


@register_featurizer("hashing")
def load_hashing(folder: Path, preprocessing: dict[str, Any]) -> HashingFeaturizer:
    """Rebuild a HashingFeaturizer from ``featurizer.json`` (falling back to ``miniml.json`` settings)."""
    file = Path(folder) / FEATURIZER_FILE
    settings = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else preprocessing
    return HashingFeaturizer(
        buckets=settings["buckets"],
        char_ngrams=tuple(settings["char_ngrams"]),
        word_ngrams=settings["word_ngrams"],
        lowercase=settings["lowercase"],
        max_chars=settings["max_chars"],
    )

"""The per-step work of guided decoding: mask each guided row's logits, advance its matcher.

:class:`GuidedRows` holds one matcher (or None: unguided) per row of a decoding batch and follows the batch
as rows join and leave (``extend`` / ``keep``). ``mask(logits)`` computes the allowed-token bitmask of every
guided row in one llguidance call (``fill_next_token_bitmask_par``: the GIL is dropped) and sets the
logits of every other token to -inf — before temperature and top-p, so sampling only ever sees allowed
tokens. A row whose grammar is complete may only end; a row left with no allowed token (a grammar its
tokenizer cannot finish) may only end as well, and ``dead_end(row)`` says so. :class:`GuidedLogitsProcessor`
plugs the same step into ``model.generate`` (the fallback loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def apply_bitmask(logits: Any, bitmask: Any, rows: Sequence[int]) -> None:
    """Set ``logits[row, t]`` to -inf where bit ``t`` of ``bitmask[i]`` is 0, for the i-th of ``rows``."""
    import torch

    if not rows:
        return
    width = logits.shape[1]
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little", count=width)  # (R, V)
    banned = torch.from_numpy(bits == 0).to(logits.device)
    for i, row in enumerate(rows):  # in place on each row's view (advanced indexing would copy, slowly)
        logits[row].masked_fill_(banned[i], float("-inf"))


class GuidedRows:
    """Matchers of a decoding batch, row by row (None for unguided rows)."""

    def __init__(self, matchers: Sequence[Any | None], vocab_size: int, end_ids: Sequence[int]) -> None:
        self.matchers: list[Any | None] = list(matchers)
        self.vocab_size = vocab_size
        self.end_ids = list(end_ids)
        self.dead: set[int] = set()
        self._executor: Any = None

    @property
    def active(self) -> bool:
        return any(m is not None for m in self.matchers)

    def extend(self, other: GuidedRows) -> None:
        """``other``'s rows joined the batch (appended in order, dead ends included)."""
        offset = len(self.matchers)
        self.matchers.extend(other.matchers)
        self.dead |= {offset + r for r in other.dead}

    def keep(self, rows: Sequence[int]) -> None:
        """Only these rows remain, in this order (the others left the batch)."""
        self.dead = {i for i, old in enumerate(rows) if old in self.dead}
        self.matchers = [self.matchers[i] for i in rows]

    def mask(self, logits: Any) -> None:
        """Restrict every guided row of ``logits`` (B, V) to the tokens its grammar allows next."""
        rows = [i for i, m in enumerate(self.matchers) if m is not None]
        if rows:
            apply_bitmask(logits, self.bitmask(rows), rows)

    def bitmask(self, rows: Sequence[int]) -> Any:
        """The allowed-token bits (len(rows), ceil(V / 32)) of these guided rows (distinct matchers)."""
        import llguidance
        import torch

        if self._executor is None:
            self._executor = llguidance.LLExecutor()
        # (R, ceil(V / 32)) bits; filled in place by llguidance (not llguidance.torch: it imports dynamo)
        bitmask = torch.zeros(len(rows), (self.vocab_size + 31) // 32, dtype=torch.int32)
        live = [(self.matchers[r], i) for i, r in enumerate(rows) if r not in self.dead]
        if live:
            self._executor.unsafe_compute_mask_ptr(live, bitmask.data_ptr(), bitmask.shape[1] * 4, len(rows))
        for i, r in enumerate(rows):
            if r in self.dead or not bool(bitmask[i].any()):  # nothing (more) allowed: the row may only end
                self.dead.add(r)
                bitmask[i] = 0
                for end in self.end_ids:
                    bitmask[i, end // 32] |= 1 << (end % 32)
        return bitmask

    def advance(self, row: int, token: int) -> None:
        """Feed the token chosen for ``row`` to its matcher (end tokens finish the row instead)."""
        matcher = self.matchers[row]
        if matcher is None or token in self.end_ids:
            return
        if not matcher.consume_token(token):
            self.dead.add(row)  # an error state: from now on the row may only end, never run free

    def dead_end(self, row: int) -> bool:
        """Whether ``row`` ran into a state its grammar could not continue from."""
        return row in self.dead

    def complete(self, row: int) -> bool:
        """Whether ``row``'s answer so far satisfies its grammar (unguided rows: always)."""
        matcher = self.matchers[row]
        return matcher is None or bool(matcher.is_accepting())


class GuidedLogitsProcessor:
    """``GuidedRows`` as a transformers logits processor (for ``model.generate``; greedy or sampling)."""

    def __init__(self, rows: GuidedRows, finished: Any = None) -> None:
        self.rows = rows
        self.finished = finished  # callable(row) -> bool: rows the caller already ended
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._started:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                if self.finished is None or not self.finished(row):
                    self.rows.advance(row, int(token))
        self._started = True
        self.rows.mask(scores)
        return scores


class GuidedBeamProcessor:
    """Guided decoding for beam search (``model.generate(num_beams=N)``), as a logits processor.

    Beam search reorders, copies and drops hypotheses between steps, so a matcher cannot follow a fixed
    row. Here a hypothesis's matcher is keyed by its prompt and the tokens it has written: each step looks
    up the matcher of the hypothesis's prefix less its last token (kept from the step before), copies it
    and feeds it that token. Only the last two prefix lengths are kept. Row ``r`` of the beam batch belongs
    to prompt ``r // num_beams`` (transformers' layout); ``offset`` is where answers start in ``input_ids``.
    """

    def __init__(
        self,
        constraints: Sequence[Any | None],
        num_beams: int,
        vocab_size: int,
        end_ids: Sequence[int],
        offset: int,
    ) -> None:
        self.constraints = list(constraints)  # CompiledConstraint or None, one per prompt
        self.num_beams = num_beams
        self.vocab_size = vocab_size
        self.end_ids = list(end_ids)
        self.offset = offset
        self._states: dict[tuple[int, tuple[int, ...]], Any] = {}  # (prompt, prefix) -> matcher | None (dead)

    def _state(self, prompt: int, prefix: tuple[int, ...]) -> Any:
        key = (prompt, prefix)
        if key in self._states:
            return self._states[key]
        constraint = self.constraints[prompt]
        assert constraint is not None
        if not prefix:
            matcher = constraint.matcher()
        else:
            parent = self._state(prompt, prefix[:-1])
            token = prefix[-1]
            matcher = None
            if parent is not None and token not in self.end_ids:
                matcher = parent.deep_copy()
                if not matcher.consume_token(token):
                    matcher = None  # an error state: this hypothesis may only end
        self._states[key] = matcher
        return matcher

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        answers = input_ids[:, self.offset :].tolist()
        length = len(answers[0]) if answers else 0
        self._states = {k: v for k, v in self._states.items() if len(k[1]) >= length - 1}
        # hypotheses with one prefix share a matcher: its mask is computed once (llguidance borrows each
        # matcher mutably, so one matcher may not appear twice in a call)
        unique: dict[tuple[int, tuple[int, ...]], int] = {}
        matchers: list[Any] = []
        dead: set[int] = set()
        guided_rows, which = [], []
        for row, prefix in enumerate(answers):
            prompt = row // self.num_beams
            constraint = self.constraints[prompt]
            if constraint is None:
                continue
            key = (prompt, tuple(int(t) for t in prefix))
            if key not in unique:
                matcher = self._state(*key)
                if matcher is None:
                    dead.add(len(matchers))
                    matcher = constraint.matcher()  # a placeholder: dead rows may only end
                unique[key] = len(matchers)
                matchers.append(matcher)
            guided_rows.append(row)
            which.append(unique[key])
        if not guided_rows:
            return scores
        rows = GuidedRows(matchers, self.vocab_size, self.end_ids)
        rows.dead = dead
        bits = rows.bitmask(range(len(matchers)))
        apply_bitmask(scores, bits[which], guided_rows)
        return scores

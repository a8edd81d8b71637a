"""One answer being written, token by token: its text, stop strings, streamed pieces and end.

:class:`RowText` is shared by both decoding loops (``model.generate`` in :mod:`miniml.runtime.generation`,
the step scheduler in :mod:`miniml.runtime.decoding.scheduler`): it decodes the row's tokens so far, cuts
the text at the earliest stop string, ends the row at an end token, a stop string or its token cap, and
hands out the text not sent yet — minus a tail that may still become a stop string or is half a
multi-byte character.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from miniml.guided.compiler import CompiledConstraint

FinishReason = Literal["stop", "length", "cancelled"]


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might start a stop string (not streamed until resolved)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class RowText:
    """The tokens and text of one answer, its stop rule and what of it was streamed."""

    def __init__(
        self, decode: Callable[[list[int]], str], stops: Sequence[str], max_new_tokens: int, end_ids: set[int]
    ) -> None:
        self.decode, self.stops, self.max_new_tokens, self.end_ids = (
            decode,
            tuple(stops),
            max_new_tokens,
            end_ids,
        )
        self.tokens: list[int] = []
        self.text = ""
        self.sent = ""
        self.finish: FinishReason | None = None

    def add(self, token: int) -> None:
        """Take the row's next token; ends the row at an end token, a stop string or the token cap."""
        if self.finish is not None:
            return
        if token in self.end_ids:
            self.finish = "stop"
            return
        self.tokens.append(token)
        self.text, stopped = cut_at_stop(self.decode(self.tokens), self.stops)
        if stopped:
            self.finish = "stop"
        elif len(self.tokens) >= self.max_new_tokens:
            self.finish = "length"

    def end(self, reason: FinishReason) -> None:
        if self.finish is None:
            self.finish = reason

    def piece(self) -> str:
        """Text not handed out yet that can no longer change; it counts as sent."""
        ready = self.text
        if self.finish is None:
            ready = ready[: len(ready) - held_back(ready, self.stops)].rstrip("\ufffd")
        piece = ready[len(self.sent) :] if ready.startswith(self.sent) else ""
        self.sent += piece
        return piece


@dataclass(eq=False)
class RowRequest:
    """One prompt handed to the step scheduler, with what to call as it is answered."""

    ids: list[int]
    params: Any  # GenerationParams
    constraint: CompiledConstraint | None = None
    cancel: threading.Event | None = None
    on_piece: Callable[[str], None] | None = None  # each new text piece (on the decoding thread)
    on_done: Callable[[Any], None] | None = None  # the GenerationResult, or the exception that failed it
    created: float = field(default_factory=time.monotonic)
    first_piece: float | None = None

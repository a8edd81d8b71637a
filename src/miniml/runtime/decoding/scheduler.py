"""Continuous batching: generation scheduled one decoding step at a time.

``model.generate`` (the static loop) runs a batch from its first token to its last: a prompt that arrives
meanwhile waits for the whole batch, and a row that ends early holds its slot until the longest row is
done. :class:`ContinuousScheduler` runs the batch one step at a time instead: ``admit`` prefills new rows
(their prompts through the model, or through the encoder and a first decoder step), chooses their first
token at once (that is their time to first token) and merges them into the running batch; ``step``
advances every row by one token; a row that ends — end token, stop string, token cap, grammar done, cancel
flag, position limit — leaves the batch in that step and its result is handed out at once. Each row keeps
its own sampling settings (greedy and sampled rows share a step), stop strings, constraint and cancel flag.

Beam search has no step form here: a beam request runs through the static loop when admitted (the
batch waits for it). A model the steppers cannot batch this way (:func:`stepper_for`; ``static_reason``
says why) runs every admitted group through the static loop, as the server did before.

The scheduler itself is single-threaded and synchronous (the server's worker thread drives it); the
callbacks of a :class:`RowRequest` run on that thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from miniml.guided.mask import GuidedRows
from miniml.runtime.decoding.rows import RowRequest, RowText
from miniml.runtime.decoding.sampling import pick_tokens, suppress
from miniml.runtime.decoding.steppers import BatchState, Stepper, merge, select, stepper_for

if TYPE_CHECKING:
    from miniml.runtime.generation import Generator


@dataclass(eq=False)
class _Row:
    request: RowRequest
    text: RowText


class ContinuousScheduler:
    """Step-level batching of one model's generations (see the module docstring)."""

    def __init__(self, generator: Generator, max_rows: int) -> None:
        stepper = stepper_for(generator.model, int(generator.tokenizer.pad_token_id))
        self.generator = generator
        self.stepper: Stepper | None = None if isinstance(stepper, str) else stepper
        self.static_reason: str | None = stepper if isinstance(stepper, str) else None
        self.max_rows = max_rows
        self.end_ids = sorted(generator.end_ids)
        self.suppressed = list(getattr(generator.model.generation_config, "suppress_tokens", None) or [])
        self.max_positions = _max_positions(generator.model.config)
        self.state: BatchState | None = None
        self.rows: list[_Row] = []
        self.guided = GuidedRows([], generator.vocab_size, self.end_ids)
        self.last = torch.zeros(0, dtype=torch.long, device=generator.device)

    @property
    def active(self) -> int:
        return len(self.rows)

    @property
    def free(self) -> int:
        return max(0, self.max_rows - len(self.rows))

    # ------------------------------------------------------------------ joining
    def admit(self, requests: Sequence[RowRequest]) -> None:
        """Prefill ``requests``, choose their first tokens and add the unfinished ones to the batch."""
        static = [r for r in requests if r.params.num_beams > 1 or self.stepper is None]
        fresh = [r for r in requests if r not in static]
        if static:
            self._run_static(static)
        if not fresh or self.stepper is None:
            return
        try:
            guided = GuidedRows(
                [r.constraint.matcher() if r.constraint is not None else None for r in fresh],
                self.generator.vocab_size,
                self.end_ids,
            )
            rows = [_Row(r, self.generator.row_text(r.params, r.constraint is not None)) for r in fresh]
            for row in rows:
                row.text.max_new_tokens = min(row.text.max_new_tokens, self._room(len(row.request.ids)))
            with torch.inference_mode():
                state, logits = self.stepper.prefill([r.ids for r in fresh])
                tokens = self._choose(logits, rows, guided)
        except Exception as err:  # e.g. out of memory for this prefill: these rows fail, the batch goes on
            for r in fresh:
                _done(r, err)
            return
        keep = self._retire(rows)
        if not keep:
            return
        kept = select(state, keep)
        assert kept is not None
        guided.keep(keep)
        self.state = merge(self.state, kept)
        self.guided.extend(guided)
        self.rows += [rows[i] for i in keep]
        self.last = torch.cat([self.last, tokens[keep]])

    def _room(self, prompt_tokens: int) -> int:
        """New tokens a row may take before the model's position limit (causal LMs count the prompt)."""
        used = prompt_tokens if not getattr(self.generator.model.config, "is_encoder_decoder", False) else 1
        return max(1, self.max_positions - used) if self.max_positions else 1 << 30

    def _run_static(self, requests: Sequence[RowRequest]) -> None:
        """Requests the step loop cannot take, through ``model.generate``: one run per sampling setting."""
        groups: dict[tuple[float, float, int], list[RowRequest]] = {}
        for request in requests:
            groups.setdefault(request.params.sampling_key(), []).append(request)
        for group in groups.values():
            streams = group[0].params.num_beams == 1
            try:
                results = self.generator.run(
                    [r.ids for r in group],
                    [r.params for r in group],
                    [r.cancel for r in group],
                    _dispatcher(group) if streams else None,
                    [r.constraint for r in group],
                )
            except Exception as err:
                for request in group:
                    _done(request, err)
                continue
            for request, result in zip(group, results, strict=True):
                if not streams and result.text and request.on_piece is not None:
                    request.first_piece = time.monotonic()
                    request.on_piece(result.text)
                _done(request, result)

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        """Advance every row by one token; rows that end leave the batch and get their result."""
        if not self.rows or self.state is None or self.stepper is None:
            return
        try:
            with torch.inference_mode():
                logits = self.stepper.step(self.state, self.last)
                tokens = self._choose(logits, self.rows, self.guided)
        except Exception as err:  # the whole batch is lost: fail its rows, start afresh
            self.fail_all(err)
            return
        keep = self._retire(self.rows)
        if len(keep) < len(self.rows):
            self.state = select(self.state, keep)
            self.guided.keep(keep)
            self.rows = [self.rows[i] for i in keep]
        self.last = tokens[keep]

    def _choose(self, logits: torch.Tensor, rows: Sequence[_Row], guided: GuidedRows) -> torch.Tensor:
        """Mask, pick and record each row's next token; stream its new text."""
        logits = logits.float()
        suppress(logits, self.suppressed)
        guided.mask(logits)
        params = [row.request.params for row in rows]
        tokens = pick_tokens(logits, [p.temperature for p in params], [p.top_p for p in params])
        now = time.monotonic()
        for i, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            guided.advance(i, token)
            row.text.add(token)
            cancel = row.request.cancel
            if cancel is not None and cancel.is_set():
                row.text.end("cancelled")
            piece = row.text.piece()
            if piece and row.request.on_piece is not None:
                if row.request.first_piece is None:
                    row.request.first_piece = now
                row.request.on_piece(piece)
        return tokens

    def _retire(self, rows: Sequence[_Row]) -> list[int]:
        """Hand out the results of finished rows; the indices of the others."""
        from miniml.runtime.generation import GenerationResult

        keep = []
        for i, row in enumerate(rows):
            if row.text.finish is None:
                keep.append(i)
                continue
            text, ids = row.text, row.request.ids
            _done(
                row.request, GenerationResult(text.text, len(ids), len(text.tokens), text.finish or "length")
            )
        return keep

    def fail_all(self, err: BaseException) -> None:
        """Every running row fails with ``err``; the batch is emptied."""
        for row in self.rows:
            _done(row.request, err)
        self.rows, self.state = [], None
        self.guided = GuidedRows([], self.generator.vocab_size, self.end_ids)
        self.last = self.last[:0]

    def run(self, requests: Sequence[RowRequest]) -> None:
        """Admit ``requests`` as slots free up and step until all are answered (offline use and tests)."""
        queue = list(requests)
        while queue or self.rows:
            if queue and self.free:
                taken, queue = queue[: self.free], queue[self.free :]
                self.admit(taken)
            self.step()


def _dispatcher(group: Sequence[RowRequest]) -> Any:
    """The static loop's per-step callback: each row's new piece to its request."""

    def on_step(pieces: list[str]) -> None:
        now = time.monotonic()
        for request, piece in zip(group, pieces, strict=True):
            if piece and request.on_piece is not None:
                request.first_piece = request.first_piece or now
                request.on_piece(piece)

    return on_step


def _done(request: RowRequest, outcome: Any) -> None:
    if request.on_done is not None:
        request.on_done(outcome)


def _max_positions(config: Any) -> int | None:
    decoder = getattr(config, "decoder", None) or config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(decoder, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None

"""The generation runtime: text from a seq2seq or causal-LM model, batched, streamed, stoppable per row.

``Generator.run`` drives ``model.generate`` for a batch of prompts whose sampling settings agree
(temperature, top_p, num_beams) while every row keeps its own ``max_new_tokens``, stop strings and cancel
flag. A stopping criterion (``_RowTracker``) reads each step's new tokens, decodes every row's text so far,
cuts it at a stop string, and finishes the rows that are done, cancelled or at their token cap; the same
tracker hands out each step's new text pieces, which is how streaming works for a whole batch at once
(transformers' ``TextIteratorStreamer`` handles one sequence only). Beam search cannot stream and applies
stop strings after the fact.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import MinimlError
from miniml.models.hf import end_token_id

if TYPE_CHECKING:
    import torch

    from miniml.modelfolder import ModelInfo

FinishReason = Literal["stop", "length", "cancelled"]


class PromptFormat(Protocol):
    """How a generative model's prompts become token ids (the task's format saved in ``miniml.json``)."""

    max_input_tokens: int
    padding_side: ClassVar[str]  # "left" for decoders (generation continues at the right edge)

    def prompt_ids(self, tokenizer: Any, text: str) -> list[int]: ...

    def truncate_prompt(self, ids: list[int]) -> list[int]: ...

    def chat_ids(self, tokenizer: Any, messages: list[dict[str, str]]) -> list[int] | None:
        """A conversation's ids through the chat template; None when the model has none."""
        ...


class GenerationParams(BaseModel):
    """How to generate: token budget, sampling, beams, stop strings (one request's settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(64, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 means greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    num_beams: int = Field(1, ge=1, le=16)
    stop: tuple[str, ...] = Field((), max_length=8, description="cut the answer before any of these")

    def sampling_key(self) -> tuple[float, float, int]:
        """Rows may share one batch when these agree."""
        return (self.temperature, self.top_p, self.num_beams)


@dataclass
class GenerationResult:
    """One prompt's answer with its token counts and why it ended."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class PromptTooLongError(MinimlError):
    """A prompt exceeds the model's prompt-token cap."""


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


class _RowTracker:
    """A stopping criterion that follows every row's tokens and text, and streams the new pieces."""

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        params: Sequence[GenerationParams],
        end_ids: set[int],
        cancel: Sequence[threading.Event | None],
        on_step: Callable[[list[str]], None] | None,
    ) -> None:
        self.decode, self.params, self.end_ids = decode, list(params), end_ids
        self.cancel, self.on_step = list(cancel), on_step
        size = len(self.params)
        self.tokens: list[list[int]] = [[] for _ in range(size)]
        self.text = [""] * size
        self.sent = [""] * size
        self.finish: list[FinishReason | None] = [None] * size

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        for row, token in enumerate(input_ids[:, -1].tolist()):
            if self.finish[row] is None:
                self._advance(row, int(token))
        for row, event in enumerate(self.cancel):
            if event is not None and event.is_set() and self.finish[row] is None:
                self.finish[row] = "cancelled"
        self._emit()
        return torch.tensor([f is not None for f in self.finish], dtype=torch.bool, device=input_ids.device)

    def _advance(self, row: int, token: int) -> None:
        params = self.params[row]
        if token in self.end_ids:
            self.finish[row] = "stop"
            return
        self.tokens[row].append(token)
        text, stopped = cut_at_stop(self.decode(self.tokens[row]), params.stop)
        self.text[row] = text
        if stopped:
            self.finish[row] = "stop"
        elif len(self.tokens[row]) >= params.max_new_tokens:
            self.finish[row] = "length"

    def _emit(self) -> None:
        """Send each row the text it has not sent yet, minus what may still turn into a stop string."""
        if self.on_step is None:
            return
        pieces = []
        for row, text in enumerate(self.text):
            ready = text
            if self.finish[row] is None:
                ready = text[: len(text) - held_back(text, self.params[row].stop)]
                ready = ready.rstrip("\ufffd")  # an incomplete multi-byte character: wait for the rest
            piece = ready[len(self.sent[row]) :] if ready.startswith(self.sent[row]) else ""
            self.sent[row] += piece
            pieces.append(piece)
        if any(pieces):
            self.on_step(pieces)

    def close(self) -> None:
        """Rows still open when generation ended ran out of tokens; flush what they hold."""
        self.finish = [f or "length" for f in self.finish]
        self._emit()


class Generator:
    """Generates text with a seq2seq or causal-LM model and its tokenizer, through the model's own format.

    The generation runtime: the generative tasks load a model folder into one (``load_generator``).
    """

    def __init__(self, model: Any, tokenizer: Any, fmt: PromptFormat, info: ModelInfo | None = None):
        self.model, self.tokenizer, self.format, self.info = model, tokenizer, fmt, info
        self.default_params = GenerationParams.model_validate(
            (info.preprocessing.get("generation") if info else None) or {}
        )
        self.end_ids = {end_token_id(self.tokenizer)} | set(
            _as_list(self.model.generation_config.eos_token_id)
        )
        self.device = next(self.model.parameters()).device

    @property
    def max_prompt_tokens(self) -> int:
        return self.format.max_input_tokens

    def encode_prompt(self, prompt: str, *, truncate: bool = False) -> list[int]:
        """Token ids for ``prompt``; over the cap it is cut (``truncate``) or refused."""
        ids = self.format.prompt_ids(self.tokenizer, prompt)
        return self._check_length(ids, truncate)

    def encode_chat(self, messages: list[dict[str, str]], *, truncate: bool = False) -> list[int]:
        """Token ids for a conversation (see ``chat_prompt_ids``); over the cap it is cut or refused."""
        return self._check_length(self.chat_prompt_ids(messages), truncate)

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation's ids: the chat template when the model has one, else the last user turn."""
        ids = self.format.chat_ids(self.tokenizer, messages)
        if ids is not None:
            return ids
        users = [m["content"] for m in messages if m.get("role") == "user"]
        if not users:
            raise MinimlError("a chat needs at least one user message", hint='add {"role": "user", ...}')
        return self.format.prompt_ids(self.tokenizer, users[-1])

    def _check_length(self, ids: list[int], truncate: bool) -> list[int]:
        if len(ids) <= self.max_prompt_tokens:
            return ids
        if truncate:
            return self.format.truncate_prompt(ids)
        raise PromptTooLongError(
            f"prompt has {len(ids)} tokens; this model accepts at most {self.max_prompt_tokens}",
            hint="shorten the prompt",
        )

    def generate(
        self, prompts: Sequence[str], params: GenerationParams | None = None, *, truncate: bool = False
    ) -> list[str]:
        """Answer every prompt (one batch); over-long prompts are refused unless ``truncate``."""
        ids = [self.encode_prompt(p, truncate=truncate) for p in prompts]
        return [r.text for r in self.run(ids, [params or self.default_params] * len(ids))]

    def stream(
        self,
        prompts: Sequence[str],
        params: GenerationParams | None = None,
        cancel: Sequence[threading.Event | None] | None = None,
    ) -> Iterator[list[str]]:
        """Yield, step by step, the new text piece of every prompt (empty where a row has nothing new)."""
        ids = [self.encode_prompt(p) for p in prompts]
        pieces: queue.Queue[list[str] | BaseException | None] = queue.Queue()

        def work() -> None:
            try:
                self.run(ids, [params or self.default_params] * len(ids), cancel, on_step=pieces.put)
                pieces.put(None)
            except BaseException as err:  # handed to the consumer thread, which re-raises it
                pieces.put(err)

        thread = threading.Thread(target=work, name="miniml-generate", daemon=True)
        thread.start()
        while (item := pieces.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
        thread.join()

    def run(
        self,
        prompt_ids: Sequence[list[int]],
        params: Sequence[GenerationParams],
        cancel: Sequence[threading.Event | None] | None = None,
        on_step: Callable[[list[str]], None] | None = None,
    ) -> list[GenerationResult]:
        """Generate for already-encoded prompts in one batch; rows must share ``sampling_key()``."""
        if len({p.sampling_key() for p in params}) > 1:
            raise MinimlError("rows of one generation batch must share temperature, top_p and num_beams")
        if not prompt_ids:
            return []
        first = params[0]
        if first.num_beams > 1:
            if on_step is not None:
                raise MinimlError("streaming needs num_beams: 1", hint="set num_beams to 1 or stream: false")
            return self._run_beams(prompt_ids, params)
        tracker = _RowTracker(self._decode, params, self.end_ids, cancel or [None] * len(params), on_step)
        self._generate(prompt_ids, first, max(p.max_new_tokens for p in params), stopping=tracker)
        tracker.close()
        return [
            GenerationResult(text, len(ids), len(tokens), finish or "length")
            for text, ids, tokens, finish in zip(
                tracker.text, prompt_ids, tracker.tokens, tracker.finish, strict=True
            )
        ]

    def _run_beams(
        self, prompt_ids: Sequence[list[int]], params: Sequence[GenerationParams]
    ) -> list[GenerationResult]:
        output, offset = self._generate(prompt_ids, params[0], max(p.max_new_tokens for p in params))
        results = []
        for ids, row, p in zip(prompt_ids, output.tolist(), params, strict=True):
            tokens = [t for t in row[offset:] if t != self.tokenizer.pad_token_id]
            ended = next((i for i, t in enumerate(tokens) if t in self.end_ids), None)
            tokens = tokens[:ended][: p.max_new_tokens]
            text, stopped = cut_at_stop(self._decode(tokens), p.stop)
            reason: FinishReason = "stop" if stopped or ended is not None else "length"
            results.append(GenerationResult(text, len(ids), len(tokens), reason))
        return results

    def _generate(
        self, prompt_ids: Sequence[list[int]], params: GenerationParams, max_new: int, stopping: Any = None
    ) -> tuple[torch.Tensor, int]:
        """One ``model.generate`` call over the padded batch; returns the ids and where answers start."""
        import torch
        from transformers import StoppingCriteriaList

        batch = self._pad(prompt_ids)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "num_beams": params.num_beams}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False)
        if stopping is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([stopping])
        with torch.inference_mode():
            output = self.model.generate(**batch, **kwargs)
        encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        return output, 1 if encoder_decoder else batch["input_ids"].shape[1]

    def _pad(self, prompt_ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Pad to one tensor: on the left for causal LMs (generation continues at the right edge)."""
        import torch

        width = max(len(ids) for ids in prompt_ids)
        pad = int(self.tokenizer.pad_token_id)
        left = self.format.padding_side == "left"
        rows, masks = [], []
        for ids in prompt_ids:
            fill = width - len(ids)
            rows.append([pad] * fill + ids if left else ids + [pad] * fill)
            masks.append([0] * fill + [1] * len(ids) if left else [1] * len(ids) + [0] * fill)
        return {
            "input_ids": torch.tensor(rows, dtype=torch.long, device=self.device),
            "attention_mask": torch.tensor(masks, dtype=torch.long, device=self.device),
        }

    def _decode(self, tokens: list[int]) -> str:
        return str(
            self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        )


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]

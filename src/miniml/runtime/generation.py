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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from miniml.errors import MinimlError, ModelError
from miniml.models.hf import end_token_id
from miniml.runtime.decoding.rows import FinishReason, RowText, cut_at_stop, held_back

if TYPE_CHECKING:
    import torch

    from miniml.guided.compiler import CompiledConstraint, GuidedCompiler, GuidedLimits
    from miniml.guided.spec import GuidedSpec
    from miniml.guided.template import ModelConstraint
    from miniml.modelfolder import ModelInfo

__all__ = ["FinishReason", "GenerationParams", "GenerationResult", "Generator", "cut_at_stop", "held_back"]


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


class _RowTracker:
    """A stopping criterion that follows every row's tokens and text (one ``RowText`` each) and streams the
    new pieces."""

    def __init__(
        self,
        rows: Sequence[RowText],
        cancel: Sequence[threading.Event | None],
        on_step: Callable[[list[str]], None] | None,
    ) -> None:
        self.rows, self.cancel, self.on_step = list(rows), list(cancel), on_step

    @property
    def finish(self) -> list[FinishReason | None]:
        return [row.finish for row in self.rows]

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
            row.add(int(token))
        for row, event in zip(self.rows, self.cancel, strict=True):
            if event is not None and event.is_set():
                row.end("cancelled")
        self._emit()
        return torch.tensor([f is not None for f in self.finish], dtype=torch.bool, device=input_ids.device)

    def _emit(self) -> None:
        """Send each row the text it has not sent yet, minus what may still turn into a stop string."""
        if self.on_step is None:
            return
        pieces = [row.piece() for row in self.rows]
        if any(pieces):
            self.on_step(pieces)

    def close(self) -> None:
        """Rows still open when generation ended ran out of tokens; flush what they hold."""
        for row in self.rows:
            row.end("length")
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
        self.constraint = model_constraint(info)
        self._guide: GuidedCompiler | None = None
        self._guide_lock = threading.Lock()

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
        self,
        prompts: Sequence[str],
        params: GenerationParams | None = None,
        *,
        truncate: bool = False,
        guided: GuidedSpec | None = None,
        use_model_constraint: bool = True,
    ) -> list[str]:
        """Answer every prompt (one batch); over-long prompts are refused unless ``truncate``.

        ``guided`` constrains every answer; otherwise the model's own constraint applies, if it has one
        and ``use_model_constraint`` is true.
        """
        ids = [self.encode_prompt(p, truncate=truncate) for p in prompts]
        constraints = [self.constraint_for(p, guided, use_model=use_model_constraint) for p in prompts]
        return [
            r.text for r in self.run(ids, [params or self.default_params] * len(ids), constraints=constraints)
        ]

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
        constraints: Sequence[CompiledConstraint | None] | None = None,
    ) -> list[GenerationResult]:
        """Generate for already-encoded prompts in one batch; rows must share ``sampling_key()``.

        ``constraints`` (one per row, None for free text) restrict rows to a compiled grammar.
        """
        if len({p.sampling_key() for p in params}) > 1:
            raise MinimlError("rows of one generation batch must share temperature, top_p and num_beams")
        if not prompt_ids:
            return []
        first = params[0]
        guided = list(constraints or [None] * len(params))
        if first.num_beams > 1:
            if on_step is not None:
                raise MinimlError("streaming needs num_beams: 1", hint="set num_beams to 1 or stream: false")
            return self._run_beams(prompt_ids, params, guided)
        rows = [self.row_text(p, c is not None) for p, c in zip(params, guided, strict=True)]
        tracker = _RowTracker(rows, cancel or [None] * len(params), on_step)
        processors = self._guided_processor(guided, tracker)
        max_new = max(p.max_new_tokens for p in params)
        self._generate(prompt_ids, first, max_new, stopping=tracker, processors=processors)
        tracker.close()
        return [
            GenerationResult(row.text, len(ids), len(row.tokens), row.finish or "length")
            for row, ids in zip(rows, prompt_ids, strict=True)
        ]

    def row_text(self, params: GenerationParams, guided: bool = False) -> RowText:
        """The text tracker of one row (guided rows of WordPiece models decode the grammar's own text)."""
        decode = self._decode
        if guided and not self.guide.vocab.exact:
            decode = self.guide.surface_text
        return RowText(decode, params.stop, params.max_new_tokens, self.end_ids)

    def _guided_processor(self, guided: list[CompiledConstraint | None], tracker: _RowTracker) -> list[Any]:
        if not any(c is not None for c in guided):
            return []
        from miniml.guided.mask import GuidedLogitsProcessor, GuidedRows

        matchers = [c.matcher() if c is not None else None for c in guided]
        rows = GuidedRows(matchers, self.guide.vocab.size, sorted(self.end_ids))
        return [GuidedLogitsProcessor(rows, finished=lambda r: tracker.rows[r].finish is not None)]

    # ---------------------------------------------------------------- guided decoding
    @property
    def guide(self) -> GuidedCompiler:
        """The constraint compiler for this model's tokenizer (built on first use)."""
        with self._guide_lock:
            if self._guide is None:
                self._guide = build_compiler(self.tokenizer, sorted(self.end_ids), self.vocab_size)
            return self._guide

    @property
    def vocab_size(self) -> int:
        """Width of the model's logits (may exceed the tokenizer's vocabulary)."""
        embeddings = self.model.get_output_embeddings()
        return int(embeddings.weight.shape[0]) if embeddings is not None else len(self.tokenizer)

    def constraint_for(
        self,
        prompt: str,
        spec: GuidedSpec | None = None,
        *,
        use_model: bool = True,
        limits: GuidedLimits | None = None,
    ) -> CompiledConstraint | None:
        """The compiled constraint of one row: the request's ``spec``, else the model's own (its template
        filled from ``prompt``) unless ``use_model`` is false, else None."""
        if spec is not None:
            return self.guide.compile(spec, limits)
        if use_model and self.constraint is not None:
            return self.guide.compile_lark(
                self.constraint.render(prompt, self.guide.speller), "model constraint"
            )
        return None

    def _run_beams(
        self,
        prompt_ids: Sequence[list[int]],
        params: Sequence[GenerationParams],
        guided: Sequence[CompiledConstraint | None] = (),
    ) -> list[GenerationResult]:
        """Beam search; guided rows keep every hypothesis inside their grammar (GuidedBeamProcessor)."""
        processors: list[Any] = []
        if any(c is not None for c in guided):
            from miniml.guided.mask import GuidedBeamProcessor

            encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
            offset = 1 if encoder_decoder else max(len(ids) for ids in prompt_ids)
            processors.append(
                GuidedBeamProcessor(
                    list(guided), params[0].num_beams, self.guide.vocab.size, sorted(self.end_ids), offset
                )
            )
        max_new = max(p.max_new_tokens for p in params)
        output, offset = self._generate(prompt_ids, params[0], max_new, processors=processors)
        results = []
        rows = list(guided) or [None] * len(params)
        for ids, row, p, c in zip(prompt_ids, output.tolist(), params, rows, strict=True):
            tokens = [t for t in row[offset:] if t != self.tokenizer.pad_token_id]
            ended = next((i for i, t in enumerate(tokens) if t in self.end_ids), None)
            tokens = tokens[:ended][: p.max_new_tokens]
            decode = self.guide.surface_text if c is not None and not self.guide.vocab.exact else self._decode
            text, stopped = cut_at_stop(decode(tokens), p.stop)
            reason: FinishReason = "stop" if stopped or ended is not None else "length"
            results.append(GenerationResult(text, len(ids), len(tokens), reason))
        return results

    def _generate(
        self,
        prompt_ids: Sequence[list[int]],
        params: GenerationParams,
        max_new: int,
        stopping: Any = None,
        processors: Sequence[Any] = (),
    ) -> tuple[torch.Tensor, int]:
        """One ``model.generate`` call over the padded batch; returns the ids and where answers start."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        batch = self._pad(prompt_ids)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "num_beams": params.num_beams}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False)
        if stopping is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([stopping])
        if processors:  # applied before temperature and top-p (transformers merges custom ones first)
            kwargs["logits_processor"] = LogitsProcessorList(list(processors))
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


def model_constraint(info: ModelInfo | None) -> ModelConstraint | None:
    """The constraint saved in a model folder's miniml.json, if any."""
    saved = (info.preprocessing.get("constraint") if info else None) or None
    if saved is None:
        return None
    from pydantic import ValidationError

    from miniml.guided.template import ModelConstraint

    try:
        return ModelConstraint.model_validate(saved)
    except ValidationError as err:
        raise ModelError(
            f"miniml.json preprocessing.constraint is invalid: {err.errors()[0]['msg']}"
        ) from None


def build_compiler(tokenizer: Any, end_ids: Sequence[int], vocab_size: int) -> GuidedCompiler:
    """A constraint compiler for ``tokenizer`` (llguidance, from the ``generative`` extra)."""
    try:
        from miniml.guided.compiler import GuidedCompiler
        from miniml.guided.vocab import vocabulary
    except ImportError:  # pragma: no cover - the extra is part of every install that generates
        raise ModelError(
            "guided decoding needs llguidance", hint="pip install 'miniml[generative]'"
        ) from None
    return GuidedCompiler(tokenizer, vocabulary(tokenizer, end_ids, vocab_size))

"""One decoding step for a batch whose rows started at different times, with transformers' cache classes.

A *stepper* prefills new rows (their prompt through the model, or through the encoder and a first decoder
step), runs one step for every row of the batch, and merges / drops rows of its :class:`BatchState`:

- causal LM: one ``DynamicCache`` for the batch, ``(B, heads, T, dim)`` per layer, rows aligned on the
  right (a shorter row is padded on the left and masked); each row's next position id is kept, so rows of
  different lengths run in one forward pass exactly as they would alone.
- seq2seq: the encoder's output per row (padded on the right to the longest prompt of the batch, with its
  mask) and an ``EncoderDecoderCache``: the decoder's self-attention cache aligned on the right like a
  causal LM's, the cross-attention cache (keys / values of the encoder output, computed once per row at
  prefill) padded on the right like the encoder output.

Joining rows are padded and concatenated onto the batch (``merge``); finished rows are dropped with
``select``, and padding columns no remaining row needs are cut off. A model whose positions cannot be
given per row cannot be batched this way: BART-style decoders compute positions from the cache length
alone. ``stepper_for`` says which models qualify and, for the others, why not (the server then falls back
to the static loop and says so in ``GET /v1/models``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Per-row positions reach these decoders: relative attention (T5) or a position_ids argument (the rest).
SEQ2SEQ_TYPES = {"t5", "mt5", "umt5", "encoder-decoder"}
# generation_config settings the step loop applies itself; any other non-default one means the static loop.
HANDLED_SETTINGS = {"suppress_tokens"}
CHECKED_DEFAULTS = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
}

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (B, heads, T, dim)


@dataclass
class BatchState:
    """What a running batch carries between steps (tensors are on the model's device)."""

    self_kv: Layers
    mask: torch.Tensor  # (B, T): 1 where the self-attention cache holds a real token
    positions: torch.Tensor  # (B,): the position id of each row's next token
    cross_kv: Layers | None = None  # seq2seq: (B, heads, S, dim) per layer
    encoder_states: torch.Tensor | None = None  # seq2seq: (B, S, hidden)
    encoder_mask: torch.Tensor | None = None  # seq2seq: (B, S)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])


def _layers(cache: Any) -> Layers:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _cache(layers: Layers) -> Any:
    from transformers import DynamicCache

    return DynamicCache(layers)


def _pad(t: torch.Tensor, width: int, dim: int, left: bool) -> torch.Tensor:
    extra = width - t.shape[dim]
    if extra <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    fill = torch.zeros(shape, dtype=t.dtype, device=t.device)
    return torch.cat([fill, t] if left else [t, fill], dim=dim)


def _merge_layers(a: Layers, b: Layers, left: bool) -> Layers:
    width = max(a[0][0].shape[2], b[0][0].shape[2])
    return [
        (
            torch.cat([_pad(ka, width, 2, left), _pad(kb, width, 2, left)]),
            torch.cat([_pad(va, width, 2, left), _pad(vb, width, 2, left)]),
        )
        for (ka, va), (kb, vb) in zip(a, b, strict=True)
    ]


def merge(a: BatchState | None, b: BatchState) -> BatchState:
    """``b``'s rows appended to ``a``'s: self-attention aligned on the right, encoder side on the left."""
    if a is None:
        return b
    width = max(a.mask.shape[1], b.mask.shape[1])
    state = BatchState(
        _merge_layers(a.self_kv, b.self_kv, left=True),
        torch.cat([_pad(a.mask, width, 1, True), _pad(b.mask, width, 1, True)]),
        torch.cat([a.positions, b.positions]),
    )
    if a.cross_kv is not None and b.cross_kv is not None:
        assert a.encoder_states is not None and b.encoder_states is not None
        assert a.encoder_mask is not None and b.encoder_mask is not None
        s = max(a.encoder_mask.shape[1], b.encoder_mask.shape[1])
        state.cross_kv = _merge_layers(a.cross_kv, b.cross_kv, left=False)
        state.encoder_states = torch.cat(
            [_pad(a.encoder_states, s, 1, False), _pad(b.encoder_states, s, 1, False)]
        )
        state.encoder_mask = torch.cat([_pad(a.encoder_mask, s, 1, False), _pad(b.encoder_mask, s, 1, False)])
    return state


def select(state: BatchState, rows: Sequence[int]) -> BatchState | None:
    """Only ``rows`` (in this order), with padding columns no remaining row needs cut off."""
    if not rows:
        return None
    index = torch.tensor(list(rows), device=state.mask.device)
    mask = state.mask[index]
    start = int((mask.sum(0) > 0).nonzero()[0]) if bool(mask.any()) else 0
    out = BatchState(
        [(k[index, :, start:], v[index, :, start:]) for k, v in state.self_kv],
        mask[:, start:],
        state.positions[index],
    )
    if state.cross_kv is not None:
        assert state.encoder_mask is not None and state.encoder_states is not None
        enc_mask = state.encoder_mask[index]
        end = int((enc_mask.sum(0) > 0).nonzero()[-1]) + 1
        out.cross_kv = [(k[index, :, :end], v[index, :, :end]) for k, v in state.cross_kv]
        out.encoder_states = state.encoder_states[index, :end]
        out.encoder_mask = enc_mask[:, :end]
    return out


def _padded(
    rows: Sequence[list[int]], pad: int, left: bool, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = [([pad] * (width - len(r)) + r) if left else (r + [pad] * (width - len(r))) for r in rows]
    mask = [
        ([0] * (width - len(r)) + [1] * len(r)) if left else ([1] * len(r) + [0] * (width - len(r)))
        for r in rows
    ]
    return (
        torch.tensor(ids, dtype=torch.long, device=device),
        torch.tensor(mask, dtype=torch.long, device=device),
    )


class CausalStepper:
    """Decoder-only models that take ``position_ids`` (GPT-2, Llama, an encoder run as a decoder, ...)."""

    def __init__(self, model: Any, pad_id: int) -> None:
        self.model, self.pad_id = model, pad_id
        self.device = next(model.parameters()).device

    def prefill(self, prompts: Sequence[list[int]]) -> tuple[BatchState, torch.Tensor]:
        """Run the prompts; returns their state and the logits of each one's first new token (k, V)."""
        from transformers import DynamicCache

        ids, mask = _padded(prompts, self.pad_id, left=True, device=self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(),
            use_cache=True,
        )
        state = BatchState(_layers(out.past_key_values), mask, mask.sum(1))
        return state, out.logits[:, -1, :]

    def step(self, state: BatchState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row's last token (B,); returns the next logits (B, V) and grows ``state``."""
        ones = torch.ones(state.size, 1, dtype=state.mask.dtype, device=self.device)
        mask = torch.cat([state.mask, ones], dim=1)
        out = self.model(
            input_ids=tokens.view(-1, 1),
            attention_mask=mask,
            position_ids=state.positions.view(-1, 1),
            past_key_values=_cache(state.self_kv),
            use_cache=True,
        )
        state.self_kv, state.mask, state.positions = _layers(out.past_key_values), mask, state.positions + 1
        return out.logits[:, -1, :]


class Seq2SeqStepper:
    """Encoder-decoders whose decoder positions can be given per row (T5 family, EncoderDecoderModel)."""

    def __init__(self, model: Any, pad_id: int, start_id: int) -> None:
        self.model, self.pad_id, self.start_id = model, pad_id, start_id
        self.device = next(model.parameters()).device
        self.positional = model.config.model_type == "encoder-decoder"  # absolute positions: pass them

    def prefill(self, prompts: Sequence[list[int]]) -> tuple[BatchState, torch.Tensor]:
        from transformers import DynamicCache, EncoderDecoderCache

        ids, enc_mask = _padded(prompts, self.pad_id, left=False, device=self.device)
        encoder = self.model.get_encoder()(input_ids=ids, attention_mask=enc_mask, return_dict=True)
        size = len(prompts)
        start = torch.full((size, 1), self.start_id, dtype=torch.long, device=self.device)
        mask = torch.ones(size, 1, dtype=torch.long, device=self.device)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self._forward(encoder.last_hidden_state, enc_mask, start, mask, cache, torch.zeros(size, 1))
        state = BatchState(
            _layers(out.past_key_values.self_attention_cache),
            mask,
            torch.ones(size, dtype=torch.long, device=self.device),
            _layers(out.past_key_values.cross_attention_cache),
            encoder.last_hidden_state,
            enc_mask,
        )
        return state, out.logits[:, -1, :]

    def step(self, state: BatchState, tokens: torch.Tensor) -> torch.Tensor:
        from transformers import EncoderDecoderCache

        assert state.cross_kv is not None and state.encoder_states is not None
        ones = torch.ones(state.size, 1, dtype=state.mask.dtype, device=self.device)
        mask = torch.cat([state.mask, ones], dim=1)
        cache = EncoderDecoderCache(_cache(state.self_kv), _cache(state.cross_kv))
        out = self._forward(
            state.encoder_states, state.encoder_mask, tokens.view(-1, 1), mask, cache, state.positions
        )
        state.self_kv = _layers(out.past_key_values.self_attention_cache)
        state.mask, state.positions = mask, state.positions + 1
        return out.logits[:, -1, :]

    def _forward(
        self,
        enc: torch.Tensor,
        enc_mask: Any,
        ids: torch.Tensor,
        mask: torch.Tensor,
        cache: Any,
        positions: Any,
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if self.positional:
            kwargs["decoder_position_ids"] = positions.to(self.device, torch.long).view(-1, 1)
        return self.model(
            encoder_outputs=(enc,),
            attention_mask=enc_mask,
            decoder_input_ids=ids,
            decoder_attention_mask=mask,
            past_key_values=cache,
            use_cache=True,
            **kwargs,
        )


Stepper = CausalStepper | Seq2SeqStepper


def unsupported_settings(generation_config: Any) -> list[str]:
    """generation_config settings the step loop does not apply (non-default values only)."""
    found = []
    for name, default in CHECKED_DEFAULTS.items():
        value = getattr(generation_config, name, default)
        if value not in (default, None, 0) and not (name == "repetition_penalty" and value == 1.0):
            found.append(f"{name}={value}")
    return found


def stepper_for(model: Any, pad_id: int) -> Stepper | str:
    """The stepper of ``model``, or the reason it must use the static loop."""
    config = model.config
    if unsupported := unsupported_settings(model.generation_config):
        return f"its generation_config sets {', '.join(unsupported)}"
    if getattr(config, "is_encoder_decoder", False):
        if config.model_type not in SEQ2SEQ_TYPES:
            return f"{config.model_type} decoders take positions from the cache length, not per row"
        if config.model_type == "encoder-decoder" and "position_ids" not in _params(model.decoder.forward):
            return f"its decoder ({config.decoder.model_type}) takes no position_ids"
        start = model.generation_config.decoder_start_token_id
        if start is None:
            start = config.decoder_start_token_id
        if start is None:
            return "it has no decoder_start_token_id"
        return Seq2SeqStepper(model, pad_id, int(start))
    if "position_ids" not in _params(model.forward):
        return f"{config.model_type} takes no position_ids"
    return CausalStepper(model, pad_id)


def _params(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()

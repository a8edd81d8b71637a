"""Choosing each row's next token with its own settings: greedy, or temperature + top-p sampling.

Rows of one batch may differ in every setting, so the work is vectorised over rows: a row with
temperature 0 takes the arg-max; the others divide by their temperature, keep the smallest set of tokens
whose probability reaches their top-p (the same rule as transformers' ``TopPLogitsWarper``), and sample.
Masks (guided decoding, suppressed tokens) are applied to the logits before this.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def suppress(logits: torch.Tensor, token_ids: Sequence[int]) -> None:
    """Never choose these tokens (generation_config ``suppress_tokens``)."""
    if token_ids:
        logits[:, list(token_ids)] = float("-inf")


def pick_tokens(
    logits: torch.Tensor,
    temperatures: Sequence[float],
    top_ps: Sequence[float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The next token of every row (B,), from its logits (B, V) and settings."""
    greedy = logits.argmax(dim=-1)
    temps = torch.tensor(temperatures, dtype=logits.dtype, device=logits.device)
    sampled_rows = (temps > 0).nonzero().flatten()
    if sampled_rows.numel() == 0:
        return greedy
    rows = logits[sampled_rows].float() / temps[sampled_rows].unsqueeze(1)
    tops = torch.tensor([top_ps[i] for i in sampled_rows.tolist()], dtype=rows.dtype, device=rows.device)
    rows = top_p_filter(rows, tops)
    probs = torch.softmax(rows, dim=-1)
    choice = torch.multinomial(probs, 1, generator=generator).flatten()
    out = greedy.clone()
    out[sampled_rows] = choice
    return out


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """-inf outside each row's nucleus: the most likely tokens whose probability sums to ``top_p``."""
    if bool((top_p >= 1.0).all()):
        return logits
    ordered, order = logits.sort(dim=-1, descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p).unsqueeze(1)
    drop[:, -1] = False  # always keep the most likely token
    banned = drop.scatter(1, order, drop)
    return logits.masked_fill(banned, float("-inf"))

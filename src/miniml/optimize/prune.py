"""Magnitude pruning: global unstructured (``torch.nn.utils.prune``) and whole attention heads.

Unstructured pruning zeroes the smallest-|w| fraction of all ``nn.Linear`` weights at once (made permanent
with ``prune.remove``; ``unstructured_masks`` keeps the masks on while a short fine-tune runs, so pruned
weights stay zero through it). Output projections tied to an input embedding are left alone: pruning them
would prune the embedding too and break the tie when saved. Dense kernels do not get faster from zeros, so
unstructured pruning mainly prepares smaller compressed files and sparse kernels — the report says so with
real numbers. Head pruning removes whole attention heads (their query/key/value rows and output-projection
columns), which shrinks every matmul of the layer and does speed inference up; heads are ranked by the L2
norm of their weights, globally, keeping one per layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from miniml.errors import ModelError


def linear_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every ``nn.Linear`` weight of ``module`` not tied to an embedding (what pruning ranks together)."""
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag)}
    return [
        (m, "weight") for m in module.modules() if isinstance(m, nn.Linear) and id(m.weight) not in embeddings
    ]


def sparsity(module: nn.Module) -> dict[str, float]:
    """Measured fraction of exact zeros: over Linear weights, and over all parameters."""
    lin: list[torch.Tensor] = [m.weight for m, _ in linear_weights(module)]  # type: ignore[misc]
    lin_zero = sum(int((w == 0).sum()) for w in lin)
    lin_total = sum(w.numel() for w in lin)
    params: list[torch.Tensor] = list(module.parameters())
    all_zero = sum(int((p == 0).sum()) for p in params)
    all_total = sum(p.numel() for p in params)
    return {
        "linear_sparsity": lin_zero / lin_total if lin_total else 0.0,
        "overall_sparsity": all_zero / all_total if all_total else 0.0,
        "parameters": float(all_total),
    }


@contextlib.contextmanager
def unstructured_masks(module: nn.Module, amount: float) -> Iterator[None]:
    """Mask the ``amount`` fraction of smallest-|w| Linear weights model-wide; bake the masks in on exit.

    Inside, every forward multiplies ``weight_orig`` by the fixed mask, so training cannot revive a pruned
    weight; on exit ``prune.remove`` leaves plain zeroed tensors (no hooks) to save.
    """
    params = linear_weights(module)
    if not params:
        raise ModelError(f"{type(module).__name__} has no Linear layers to prune", hint="drop --prune")
    with torch.no_grad():
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(amount))
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, name in params:
                prune.remove(layer, name)


def prune_global_unstructured(module: nn.Module, amount: float) -> dict[str, Any]:
    """Zero the ``amount`` fraction of smallest-magnitude Linear weights, model-wide, permanently."""
    with unstructured_masks(module, amount):
        pass  # no training in between: the masks are baked in as soon as they are made
    return {"method": "global_unstructured", "requested": amount, **sparsity(module)}


def attention_layers(module: nn.Module) -> Iterator[tuple[Any, nn.Linear]]:
    """(self-attention with query/key/value, its output projection) of each BERT-like layer."""
    for sub in module.modules():
        attn, out = getattr(sub, "self", None), getattr(sub, "output", None)
        if attn is not None and all(
            hasattr(attn, k) for k in ("query", "key", "value", "attention_head_size")
        ):
            dense = getattr(out, "dense", None)
            if isinstance(dense, nn.Linear):
                yield attn, dense


def head_scores(attn: Any, dense: nn.Linear) -> torch.Tensor:
    """L2 norm of each head's q/k/v rows and output columns: (heads,)."""
    size = int(attn.attention_head_size)
    parts = [attn.query.weight, attn.key.weight, attn.value.weight, dense.weight.t()]
    per_head = [p.reshape(-1, size, p.shape[-1]).pow(2).sum(dim=(1, 2)) for p in parts]  # each (heads,)
    return torch.stack(per_head).sum(0).sqrt()


def _shrink(layer: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    from transformers.pytorch_utils import prune_linear_layer

    index: Any = keep.to(layer.weight.device)
    return prune_linear_layer(layer, index, dim=dim)


def prune_heads(module: nn.Module, amount: float) -> dict[str, Any]:
    """Remove the ``amount`` fraction of lowest-norm attention heads (at least one kept per layer)."""
    layers = list(attention_layers(module))
    if not layers:
        raise ModelError(
            f"{type(module).__name__} has no BERT-like attention heads to prune",
            hint="use pruning.method=global_unstructured",
        )
    before = sum(p.numel() for p in module.parameters())
    scores = [head_scores(attn, dense) for attn, dense in layers]
    total = sum(len(s) for s in scores)
    cut = round(amount * total)
    flat = sorted((float(v), i, h) for i, s in enumerate(scores) for h, v in enumerate(s.tolist()))
    drop: dict[int, set[int]] = {i: set() for i in range(len(layers))}
    for _, i, h in flat:
        if cut == 0:
            break
        if len(drop[i]) < len(scores[i]) - 1:
            drop[i].add(h)
            cut -= 1
    with torch.no_grad():
        for i, (attn, dense) in enumerate(layers):
            _remove_heads(attn, dense, drop[i], len(scores[i]))
    removed = sum(len(d) for d in drop.values())
    after = sum(p.numel() for p in module.parameters())
    return {
        "method": "heads",
        "requested": amount,
        "heads_removed": removed,
        "heads_total": total,
        "head_sparsity": removed / total,
        "parameters_removed": 1.0 - after / before,
        "heads_per_layer": [len(s) - len(drop[i]) for i, s in enumerate(scores)],
    }


def _remove_heads(attn: Any, dense: nn.Linear, heads: set[int], count: int) -> None:
    if not heads:
        return
    size = int(attn.attention_head_size)
    keep = torch.tensor([h * size + j for h in range(count) if h not in heads for j in range(size)])
    attn.query = _shrink(attn.query, keep, 0)
    attn.key = _shrink(attn.key, keep, 0)
    attn.value = _shrink(attn.value, keep, 0)
    # the output projection's (out, in) weight loses the matching input columns
    new_dense = _shrink(dense, keep, 1)
    dense.weight, dense.in_features = new_dense.weight, new_dense.in_features
    attn.num_attention_heads = count - len(heads)
    attn.all_head_size = attn.num_attention_heads * size

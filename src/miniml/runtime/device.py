"""Where and on how many threads a model runs: the default device and torch's thread count."""

from __future__ import annotations

from miniml.errors import ModelError


def default_device() -> str:
    """``cuda`` when a CUDA GPU is present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads for this process (None: leave them)."""
    if threads is None:
        return
    if threads < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)

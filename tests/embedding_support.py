"""A tiny 'pretrained' BERT encoder built locally, and a pairs dataset it can learn, for embedding tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from miniml.data.dataset import Dataset, write_dataset

# input word i should embed next to target word i: an association a random encoder does not know
SOURCES = [f"src{i}" for i in range(24)]
TARGETS = [f"tgt{i}" for i in range(24)]
FILLER = ["the", "a", "of", "what", "is", "how", "many", "who", "kerr", "lowry", "ross", "long"]


def make_tiny_encoder(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BertModel with a word-level vocabulary, saved as a Hugging Face folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *SOURCES, *TARGETS, *FILLER]
    BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


def pairs_frame(indices: range, *, negatives: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "input": [f"what is {SOURCES[i]}" for i in indices],
            "target": [f"the {TARGETS[i]}" for i in indices],
        }
    )
    if negatives:
        frame["negative"] = [f"the {TARGETS[(i + 1) % len(TARGETS)]}" for i in indices]
    return frame


def pairs_dataset(*, negatives: bool = False) -> Dataset:
    """Every pair in every split: training on it must lift the test recall (a memorisation check)."""
    frame = pairs_frame(range(len(SOURCES)), negatives=negatives)
    return write_dataset(
        "pairs",
        "pairs-1" if not negatives else "pairs-2",
        {s: frame for s in ("train", "validation", "test")},
    )


def make_embedding_folder(
    folder: Path, encoder: Path, *, name: str = "emb", max_tokens: int = 16, truncation: bool = False
) -> Path:
    """An embedding model folder of ``encoder`` (untrained: what ``miniml models import`` writes)."""
    from miniml.tasks.registry import get_task
    from miniml.version import __version__

    settings = {"name_or_path": str(encoder), "max_tokens": max_tokens, "truncation": truncation}
    get_task("embedding").import_model(settings, folder, {"name": name, "miniml_version": __version__})
    return folder

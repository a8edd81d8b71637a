"""Tiny datasets and a tiny 'pretrained' BERT for training tests (built locally, no hub)."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from miniml.data.dataset import Dataset, write_dataset

WORDS = {
    "da": [
        "hej",
        "med",
        "dig",
        "hvordan",
        "går",
        "det",
        "godt",
        "jeg",
        "er",
        "glad",
        "i",
        "dag",
        "hvad",
        "siger",
        "du",
    ],
    "sv": [
        "jag",
        "heter",
        "anna",
        "och",
        "bor",
        "i",
        "stockholm",
        "det",
        "är",
        "bra",
        "idag",
        "vad",
        "säger",
        "du",
    ],
    "nn": ["eg", "veit", "ikkje", "kva", "eg", "skal", "seie", "no", "men", "det", "er", "fint", "her"],
}


def toy_frame(n: int, seed: int, labels: tuple[str, ...] = ("da", "sv", "nn")) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(labels)
        rows.append({"input": " ".join(rng.choices(WORDS[label], k=rng.randint(3, 9))), "target": label})
    return pd.DataFrame(rows)


def make_toy(name: str = "toy", n_train: int = 300, labels: tuple[str, ...] = ("da", "sv", "nn")) -> Dataset:
    splits = {
        "train": toy_frame(n_train, 1, labels),
        "validation": toy_frame(60, 2, labels),
        "test": toy_frame(60, 3, labels),
    }
    return write_dataset(name, f"fp{n_train}{len(labels)}", splits)


@pytest.fixture
def toy_dataset() -> Dataset:
    return make_toy()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with a word-piece tokenizer over the toy vocabulary, saved as a HF folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted({w for words in WORDS.values() for w in words})
    vocab += sorted({c for words in WORDS.values() for w in words for c in w} - set(vocab))
    backend = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers import processors

    backend.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(folder)
    return folder

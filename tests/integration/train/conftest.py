"""Training test fixtures: tiny datasets, a tiny 'pretrained' BERT built locally, a blank MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_support import WORDS, make_toy

from miniml.data.dataset import Dataset


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


@pytest.fixture(scope="session")
def blank_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated MLflow SQLite store per session (migrations take seconds); tests copy it."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from miniml.registry.backend import quiet_mlflow

    quiet_mlflow()
    folder = tmp_path_factory.mktemp("mlflow_template")
    db = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{db}", (folder / "artifacts").as_uri())
    RegistryStore(f"sqlite:///{db}")
    return db


@pytest.fixture
def mlflow_store(miniml_home: Path, blank_mlflow_db: Path) -> Path:
    """The embedded store of this test's MINIML_HOME, seeded from the blank template."""
    import shutil

    target = miniml_home / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(blank_mlflow_db, target)
    return target

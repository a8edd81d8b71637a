"""Tiny real models for the optimize unit tests: a hashing_bag and a 2-layer BERT, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from optimize_support import make_dataset, make_hashing_bag, make_tiny_bert, make_tiny_bert_source

from miniml.data.dataset import Dataset


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="session")
def bert_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert_source(tmp_path_factory.mktemp("tiny_bert_source"))


@pytest.fixture
def bert_folder(tmp_path: Path, dataset: Dataset, bert_source: Path) -> Path:
    return make_tiny_bert(tmp_path / "bert", dataset, bert_source)


@pytest.fixture
def bag_folder(tmp_path: Path, dataset: Dataset) -> Path:
    return make_hashing_bag(tmp_path / "bag", dataset)


@pytest.fixture
def copy_folder(tmp_path: Path):
    def copy(src: Path, name: str) -> Path:
        return Path(shutil.copytree(src, tmp_path / name))

    return copy

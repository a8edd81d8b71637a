import json
from pathlib import Path

import pytest

from miniml.data.catalog import dataset_files, load_catalog, select_files
from miniml.errors import DataError

SHARED_CATALOG = Path(__file__).resolve().parents[4] / "shared" / "data" / "catalog.json"


def test_catalog_names_every_dataset_with_pinned_hashes() -> None:
    catalog = load_catalog()
    assert set(catalog) == {"nordic-langid", "sst5", "wikisql-mini", "dialogsum", "nordic-langid-extra"}
    assert len(catalog["nordic-langid"]) == 18
    for files in catalog.values():
        for f in files:
            assert f.url.startswith("https://") and len(f.sha256) == 64 and f.bytes > 0 and f.license
    assert catalog["sst5"][0].name == "sst_train.txt"


def test_catalog_matches_the_shared_facts() -> None:
    if not SHARED_CATALOG.is_file():
        pytest.skip(f"no shared catalog at {SHARED_CATALOG}")
    shared = json.loads(SHARED_CATALOG.read_text())
    ours = {k: [f.model_dump() for f in v] for k, v in load_catalog().items()}
    assert ours == shared


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown catalog dataset 'imdb' \(known: dialogsum, nordic-langid"):
        dataset_files("imdb")


def test_select_files_by_glob_keeps_catalog_order() -> None:
    names = [f.name for f in select_files("nordic-langid", ["sv_*.conllu"])]
    assert names == ["sv_talbanken-ud-dev.conllu", "sv_talbanken-ud-test.conllu", "sv_pud-ud-test.conllu"]
    assert len(select_files("sst5", None)) == 3
    with pytest.raises(DataError, match=r"no file matching 'sst_val.txt' \(its files: sst_train.txt"):
        select_files("sst5", ["sst_train.txt", "sst_val.txt"])

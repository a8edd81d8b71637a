"""manifest.json lists every data file's size and sha256; old manifests without it still load."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from pydantic import ValidationError

from miniml.data.dataset import open_dataset, write_dataset
from miniml.data.manifest import Manifest


def test_written_datasets_list_their_files() -> None:
    frame = pd.DataFrame({"input": ["a", "b"], "target": ["x", "y"]})
    dataset = write_dataset("m", "fp1", {"train": frame, "test": frame})
    files = dataset.manifest.files
    assert set(files) == {"train.parquet", "test.parquet"}
    for name, record in files.items():
        data = (dataset.path / name).read_bytes()
        assert record.bytes == len(data) and record.sha256 == hashlib.sha256(data).hexdigest()


def test_old_manifest_without_files_still_opens() -> None:
    frame = pd.DataFrame({"input": ["a"], "target": ["x"]})
    dataset = write_dataset("old", "fp1", {"train": frame})
    raw = json.loads((dataset.path / "manifest.json").read_text())
    del raw["files"]
    (dataset.path / "manifest.json").write_text(json.dumps(raw))
    assert open_dataset("old/fp1").manifest.files == {}


@pytest.mark.parametrize("name", ["../x.parquet", "a/b.parquet", ".hidden", "manifest.json"])
def test_file_names_must_be_plain(name: str) -> None:
    record = {"bytes": 1, "sha256": "0" * 64}
    with pytest.raises(ValidationError):
        Manifest(name="n", fingerprint="f", files={name: record})  # type: ignore[dict-item]

from pathlib import Path

import pandas as pd
import pytest

from miniml.data.dataset import fingerprint_of, open_dataset, write_dataset
from miniml.errors import DataError


def frames() -> dict[str, pd.DataFrame]:
    return {
        "train": pd.DataFrame({"input": ["a b", "c d", "e f"], "target": ["x", "y", "x"]}),
        "test": pd.DataFrame({"input": ["g h"], "target": ["y"]}),
    }


def test_write_and_open_by_name_and_path(miniml_home: Path) -> None:
    fp = fingerprint_of({"k": 1})
    ds = write_dataset("demo", fp, frames(), config={"k": 1})
    assert ds.path == miniml_home / "datasets" / "demo" / fp
    assert ds.manifest.counts == {"train": 3, "test": 1}
    assert ds.manifest.label_counts["train"] == {"x": 2, "y": 1}
    assert ds.labels() == ["x", "y"]
    assert open_dataset("demo").path == ds.path
    assert open_dataset(f"demo/{fp}").path == ds.path
    assert open_dataset(ds.path).split("train")["input"].tolist() == ["a b", "c d", "e f"]


def test_fingerprint_is_stable_and_order_free() -> None:
    assert fingerprint_of({"a": 1, "b": [1, 2]}) == fingerprint_of({"b": [1, 2], "a": 1})
    assert fingerprint_of({"a": 1}) != fingerprint_of({"a": 2})


def test_missing_things_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="miniml data prepare"):
        open_dataset("nope")
    ds = write_dataset("demo", "f1", frames())
    with pytest.raises(DataError, match=r"no split 'validation'.*available: train, test"):
        ds.split("validation")
    with pytest.raises(DataError, match="lacks column"):
        write_dataset("demo", "f2", {"train": pd.DataFrame({"input": ["a"]})})

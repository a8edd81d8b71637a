"""The one model URI resolver: folders directly, ``models:/`` URIs through the registry (test_store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniml.errors import ModelError
from miniml.modelfolder import ModelInfo, write_info
from miniml.runtime import ModelSource, resolve, version_key


def folder_with_info(path: Path, name: str = "local") -> Path:
    path.mkdir(parents=True)
    write_info(
        path, ModelInfo(name=name, task="classification", architecture="hashing_bag", labels=["a", "b"])
    )
    return path


def test_a_folder_resolves_to_itself_with_the_name_in_its_miniml_json(tmp_path: Path) -> None:
    folder = folder_with_info(tmp_path / "m")
    assert resolve(folder) == ModelSource(str(folder), folder.resolve(), "local")
    assert resolve(str(folder)).path == folder.resolve()
    key = version_key(resolve(folder))
    assert key.startswith("local@") and key == version_key(resolve(str(folder)))  # stable per version


def test_missing_and_foreign_folders_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model folder or model URI"):
        resolve(tmp_path / "missing")
    with pytest.raises(ModelError, match="not a miniml model folder"):
        resolve(tmp_path)
    with pytest.raises(ModelError, match="invalid model URI"):
        resolve("models:/bad name")

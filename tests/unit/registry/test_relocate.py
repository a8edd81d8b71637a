"""A copied or moved MINIML_HOME: the embedded store follows it; the old home is never written again."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from miniml.registry import store
from miniml.registry.relocate import recorded_home

MakeFolder = Callable[..., Path]


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def test_a_copied_home_writes_only_into_itself(
    model_folder: MakeFolder, miniml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.register_model("langid", model_folder("langid"))
    assert Path(urlparse(first.source).path).is_relative_to(miniml_home)
    copy = tmp_path / "copied-home"
    shutil.copytree(miniml_home, copy)
    before = snapshot(miniml_home)
    monkeypatch.setenv("MINIML_HOME", str(copy))

    second = store.register_model("langid", model_folder("langid"))  # a new run in the copy
    assert Path(urlparse(second.source).path).is_relative_to(copy)
    old = store.get_version("langid", 1)
    assert Path(urlparse(old.source).path).is_relative_to(copy)  # earlier versions follow too
    resolved = store.local_copy("models:/langid/1")
    assert resolved.path.is_relative_to(copy) and (resolved.path / "model.safetensors").is_file()
    assert recorded_home(copy / "mlflow" / "mlflow.db") == copy.resolve()
    assert snapshot(miniml_home) == before  # nothing written into the original home

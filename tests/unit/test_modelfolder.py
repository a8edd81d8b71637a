"""The model folder's manifest and format version: what was saved is what loads, or a clear error."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from miniml.errors import ModelError
from miniml.modelfolder import INFO_FILE, ModelInfo, read_info, verify_folder, write_info
from miniml.models import HashingBagSpec
from miniml.models.folder import save_model_folder
from miniml.models.registry import get_builder
from miniml.tasks import load_predictor


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    spec = HashingBagSpec(buckets=2048, dim=8)
    featurizer = spec.make_featurizer([])
    torch.manual_seed(0)
    module = get_builder("hashing_bag")(spec, ["da", "sv"], featurizer)
    info = ModelInfo(
        name="demo",
        task="classification",
        architecture="hashing_bag",
        labels=["da", "sv"],
        preprocessing=featurizer.preprocessing(),
    )
    save_model_folder(tmp_path / "m", module, featurizer, spec, info)
    return tmp_path / "m"


def edit_info(folder: Path, **changes: object) -> None:
    data = json.loads((folder / INFO_FILE).read_text())
    data.update(changes)
    (folder / INFO_FILE).write_text(json.dumps(data))


def test_saving_writes_a_manifest_of_every_file(folder: Path) -> None:
    info = read_info(folder)
    assert info.format_version == 2
    assert sorted(info.manifest or {}) == [
        "README.md",
        "builder.json",
        "featurizer.json",
        "model.safetensors",
    ]
    assert verify_folder(folder).manifest == info.manifest
    (folder / ".miniml-source.json").write_text("{}")  # hidden files (the registry's marker) are not checked
    verify_folder(folder)


def test_random_bytes_in_the_weights_are_named(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(100)  # same size, header intact: safetensors alone would load it
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"file model\.safetensors does not match its sha256"):
        load_predictor(folder)


def test_an_added_file_is_refused(folder: Path) -> None:
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match=r"file tokenizer\.json is not in the manifest"):
        load_predictor(folder)


def test_edited_featurizer_is_refused_even_with_a_regenerated_manifest(folder: Path) -> None:
    settings = json.loads((folder / "featurizer.json").read_text())
    (folder / "featurizer.json").write_text(json.dumps({**settings, "buckets": 1024}))
    with pytest.raises(ModelError, match=r"featurizer\.json does not match its sha256"):
        load_predictor(folder)
    write_info(folder, read_info(folder))  # someone re-blessed the edit: the cross-checks remain
    with pytest.raises(
        ModelError, match=r"featurizer\.json disagrees with miniml\.json on buckets: 1024 vs 2048"
    ):
        load_predictor(folder)
    info = read_info(folder)
    write_info(folder, info.model_copy(update={"preprocessing": {**info.preprocessing, "buckets": 1024}}))
    with pytest.raises(ModelError, match="hashes into 1024 buckets but the model's table has 2048 rows"):
        load_predictor(folder)


@pytest.mark.parametrize(
    ("key", "value"), [("buckets", -5), ("char_ngrams", [0, 99]), ("max_chars", 0), ("word_ngrams", "two")]
)
def test_out_of_range_featurizer_values_are_model_errors(folder: Path, key: str, value: object) -> None:
    settings = json.loads((folder / "featurizer.json").read_text())
    (folder / "featurizer.json").write_text(json.dumps({**settings, key: value}))
    info = read_info(folder)
    write_info(folder, info.model_copy(update={"preprocessing": {**info.preprocessing, key: value}}))
    with pytest.raises(ModelError, match=rf"featurizer\.json: {key}"):
        load_predictor(folder)


def test_unknown_format_versions_and_a_missing_manifest_are_refused(folder: Path) -> None:
    edit_info(folder, format_version=99)
    with pytest.raises(ModelError, match="format_version 99; this miniml reads versions 1 and 2"):
        load_predictor(folder)
    edit_info(folder, format_version=2, manifest=None)
    with pytest.raises(ModelError, match="has no manifest"):
        load_predictor(folder)
    edit_info(folder, manifest={"../../etc/passwd": "0" * 64})
    with pytest.raises(ModelError, match="points outside the folder"):
        load_predictor(folder)


def test_legacy_folders_load_with_one_warning(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    edit_info(folder, format_version=1, manifest=None)  # what every miniml before manifests wrote
    with caplog.at_level(logging.WARNING, logger="miniml"):
        load_predictor(folder).predict_proba(["hej"])
        load_predictor(folder)
    warnings = [r for r in caplog.records if "has no manifest" in r.getMessage()]
    assert len(warnings) == 1 and "not verified" in warnings[0].getMessage()

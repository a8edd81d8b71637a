"""Register, look up, alias and resolve model versions against a real embedded MLflow store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from miniml.errors import ModelError, RegistryError
from miniml.registry import store
from miniml.registry.backend import get_client
from miniml.registry.tracking import RunTracker
from miniml.registry.uris import ModelSource
from miniml.runtime import resolve

MakeFolder = Callable[..., Path]


def source_dir(mv: store.ModelVersion) -> Path:
    return Path(urlparse(mv.source).path)


def test_register_twice_gives_versions_1_and_2_with_tags(model_folder: MakeFolder) -> None:
    folder = model_folder("langid", metrics={"macro_f1": 0.91, "accuracy": 0.93}, base_model="none")
    first = store.register_model("langid", folder, tags={"owner": "team-a"})
    second = store.register_model("langid", folder)
    assert (first.version, second.version) == (1, 2)
    assert first.info is not None and first.info.metrics["macro_f1"] == 0.91
    assert first.tags["task"] == "classification"
    assert first.tags["dataset.fingerprint"] == "fp-toy-1"
    assert first.tags["metric.macro_f1"] == "0.91"
    assert first.tags["base_model"] == "none"
    assert first.tags["owner"] == "team-a"
    assert (source_dir(first) / "miniml.json").is_file()
    assert (source_dir(first) / "model.safetensors").read_bytes() == (
        folder / "model.safetensors"
    ).read_bytes()
    assert first.run_id and get_client().get_run(first.run_id).info.status == "FINISHED"
    assert [v.version for v in store.list_versions("langid")] == [1, 2]


def test_register_in_a_run_reuses_an_uploaded_folder(model_folder: MakeFolder) -> None:
    folder = model_folder("clf")
    with RunTracker("clf") as run:
        run.log_artifact(folder, "model")
        mv = store.register_model("clf", folder, run_id=run.run_id)
        assert mv.source.endswith(f"{run.run_id}/artifacts/model")
        other = model_folder("clf", metrics={"macro_f1": 0.1})
        mv2 = store.register_model("clf", other, run_id=run.run_id)
        assert mv2.source.endswith("/artifacts/model-2")
    artifacts = {a.path for a in get_client().list_artifacts(run.run_id)}
    assert artifacts == {"model", "model-2"}


def test_folder_without_miniml_json_registers_nothing(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a miniml model folder"):
        store.register_model("nothing", tmp_path)
    assert store.list_models() == []


def test_unknown_run_registers_nothing(model_folder: MakeFolder) -> None:
    with pytest.raises(RegistryError, match="cannot read MLflow run"):
        store.register_model("ghost", model_folder("ghost"), run_id="f" * 32)
    assert store.list_models() == []


def test_get_version_by_number_alias_and_latest(model_folder: MakeFolder) -> None:
    folder = model_folder("m")
    for _ in range(3):
        store.register_model("m", folder)
    store.set_alias("m", 2, "champion")
    assert store.get_version("m", 3).version == 3
    assert store.get_version("m", "3").version == 3
    champion = store.get_version("m", "champion")
    assert (champion.version, champion.aliases) == (2, ("champion",))
    assert store.get_version("m", "latest").version == 3
    store.set_alias("m", 3, "champion")  # moving an alias
    assert store.get_version("m", "champion").version == 3
    assert store.get_version("m", 2).aliases == ()
    assert store.get_version("m", 3).aliases == ("champion",)
    store.delete_alias("m", "champion")
    with pytest.raises(RegistryError, match="has no alias 'champion'"):
        store.get_version("m", "champion")


def test_unknown_name_version_alias_list_what_exists(model_folder: MakeFolder) -> None:
    store.register_model("known", model_folder("known"))
    store.set_alias("known", 1, "champion")
    cases = {
        ("nope", 1): "no registered model 'nope' (registered models: known)",
        ("known", 5): "model 'known' has no version 5 (versions: 1)",
        ("known", "staging"): "model 'known' has no alias 'staging' (aliases: champion→1)",
    }
    for (name, ref), message in cases.items():
        with pytest.raises(RegistryError) as err:
            store.get_version(name, ref)
        assert str(err.value) == message
    with pytest.raises(RegistryError, match="has no version 9"):
        store.set_alias("known", 9, "champion")


def test_list_models_summarises_latest_version(model_folder: MakeFolder) -> None:
    store.register_model("b-model", model_folder("b-model", metrics={"macro_f1": 0.5}))
    store.register_model("a-model", model_folder("a-model", metrics={"macro_f1": 0.6}))
    store.register_model("a-model", model_folder("a-model", metrics={"macro_f1": 0.7}))
    store.set_alias("a-model", 1, "champion")
    models = store.list_models()
    assert [m.name for m in models] == ["a-model", "b-model"]
    assert models[0].latest_version == 2
    assert models[0].aliases == {"champion": 1}
    assert models[0].metrics["macro_f1"] == 0.7
    assert models[0].task == "classification"


def test_resolve_downloads_once_and_reuses_the_cache(miniml_home: Path, model_folder: MakeFolder) -> None:
    mv = store.register_model("cached", model_folder("cached"))
    store.set_alias("cached", 1, "champion")
    first = store.local_copy("models:/cached@champion")
    assert first == ModelSource(
        "models:/cached@champion", miniml_home / "models" / "cached" / "1", "cached", 1, "champion"
    )
    assert json.loads((first.path / "miniml.json").read_text())["name"] == "cached"
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    shutil.rmtree(source_dir(mv))  # the registry copy is gone: only the cache can answer now
    again = store.local_copy("models:/cached/1")
    assert again.path == first.path and again.alias is None
    assert (again.path / "model.safetensors").stat().st_mtime_ns == stamp
    assert store.local_copy("models:/cached").version == 1
    assert not [p for p in first.path.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_resolve_refetches_a_cache_from_another_store(model_folder: MakeFolder) -> None:
    mv = store.register_model("swap", model_folder("swap"))
    path = store.local_copy("models:/swap/1").path
    marker = path / store.SOURCE_MARKER
    marker.write_text(json.dumps({"source": "file:///elsewhere"}))
    assert store.local_copy("models:/swap/1").path == path
    assert json.loads(marker.read_text())["source"] == mv.source


def test_registry_uris_resolve_through_the_registry(model_folder: MakeFolder) -> None:
    store.register_model("remote", model_folder("remote"))
    assert resolve("models:/remote/1") == store.local_copy("models:/remote/1")
    with pytest.raises(RegistryError, match="no registered model 'absent'"):
        resolve("models:/absent@champion")


def test_register_follows_the_store_of_its_run(model_folder: MakeFolder, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    shutil.copyfile(Path(get_client().tracking_uri.removeprefix("sqlite:///")), tmp_path / "other.db")
    with RunTracker("elsewhere", tracking_uri=other) as run:
        mv = store.register_model("elsewhere", model_folder("elsewhere"), run_id=run.run_id)
    assert mv.version == 1
    assert store.list_models() == []  # the default store is untouched
    assert get_client(other).get_registered_model("elsewhere").name == "elsewhere"

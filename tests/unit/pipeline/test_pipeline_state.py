"""The pipeline state file: steps recorded before and after they run, skipped when done with the same key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miniml.errors import ConfigError
from miniml.pipeline.state import StateStore, pipeline_dir


def test_records_survive_a_new_store_and_gate_skipping(miniml_home: Path) -> None:
    store = StateStore("p", "p.yaml")
    assert store.file == miniml_home / "pipelines" / "p" / "state.json"
    store.start("train", "k1")
    assert json.loads(store.file.read_text())["steps"]["train"]["status"] == "running"
    assert store.done("train", "k1") is None  # running is not done
    store.finish("train", {"version": 3})

    again = StateStore("p", "p.yaml")
    assert again.done("train", "k1").outputs == {"version": 3}
    assert again.done("train", "k2") is None  # another config or dataset: run again
    assert StateStore("p", "p.yaml", fresh=True).get("train") is None
    assert list(pipeline_dir("p").iterdir()) == [store.file]  # atomic writes leave no temp files


def test_failures_and_interruptions_are_recorded() -> None:
    store = StateStore("p", "p.yaml")
    store.start("data", None)
    store.fail("data", ConfigError("bad source"))
    store.start("train", "k")
    store.fail("train", KeyboardInterrupt())
    saved = StateStore("p", "p.yaml")
    assert (saved.get("data").status, saved.get("data").error) == ("failed", "bad source")
    assert saved.get("train").status == "interrupted" and saved.done("train", "k") is None


def test_a_corrupted_state_file_is_one_clear_error() -> None:
    store = StateStore("p", "p.yaml")
    store.start("data", None)
    store.file.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"state .* is corrupted \(run again with --fresh\)"):
        StateStore("p", "p.yaml")
    assert StateStore("p", "p.yaml", fresh=True).get("data") is None

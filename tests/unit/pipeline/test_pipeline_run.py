"""run_pipeline's checks that need no training: --serve without a serve step, when a train step resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rich.console import Console

from miniml.errors import ConfigError
from miniml.pipeline.config import load_pipeline
from miniml.pipeline.run import Runner, _resume_train, run_pipeline
from miniml.pipeline.state import StateStore

TRAIN = {"model_name": "toy", "dataset": "toy", "model": {"kind": "hashing_bag"}}


def test_serve_flag_without_a_serve_step_is_refused_before_any_step(
    tmp_path: Path, miniml_home: Path
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "toy", "train": TRAIN}), encoding="utf-8")
    with pytest.raises(ConfigError, match="--serve: pipeline toy has no serve step"):
        run_pipeline(load_pipeline(path, environ={}), serve=True)
    assert not (miniml_home / "pipelines").exists()


def test_train_resumes_only_when_asked_and_interrupted_with_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "toy", "train": TRAIN}), encoding="utf-8")
    store = StateStore("toy", str(path))
    console = Console(file=(tmp_path / "out.txt").open("w"), soft_wrap=True)
    runner = Runner(load_pipeline(path, environ={}), store, console)
    assert not _resume_train(store, "k", True, runner)  # never ran: nothing to resume
    store.start("train", "k")
    store.fail("train", KeyboardInterrupt())
    assert _resume_train(store, "k", True, runner)
    assert not _resume_train(store, "other", True, runner)  # another config: a fresh run
    assert not _resume_train(store, "k", False, runner)
    console.file.close()
    assert "--resume continues it" in (tmp_path / "out.txt").read_text()
    store.start("train", "k")
    store.finish("train", {"version": 1})
    assert not _resume_train(store, "k", True, runner)

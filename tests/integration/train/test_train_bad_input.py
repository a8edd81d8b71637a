"""Bad input to train / evaluate / predict: exit 2, one clear line, the registry untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from train_support import make_toy, toy_frame, write_config

from miniml.cli import main
from miniml.data.dataset import Dataset, write_dataset
from miniml.registry.store import list_models
from miniml.tasks.classification import ClassificationConfig
from miniml.train.checkpoints import SEAL, seal_checkpoint
from miniml.train.session import STATE_FILE, RunState, config_fingerprint

HASHING = {"kind": "hashing_bag", "buckets": 1024, "dim": 8}
pytestmark = pytest.mark.usefixtures("mlflow_store")


def fails(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err
    assert list_models() == []  # nothing registered
    return err


def test_unknown_pretrained_model(
    tmp_path: Path, toy_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    model = {"kind": "pretrained", "name_or_path": str(tmp_path / "no-such-model")}
    fails(["train", str(write_config(tmp_path / "c.yaml", toy_dataset, model))], capsys, "no-such-model")
    folder = tmp_path / "not-hf"
    folder.mkdir()
    model = {"kind": "pretrained", "name_or_path": str(folder)}
    fails(["train", str(write_config(tmp_path / "c.yaml", toy_dataset, model))], capsys, "config.json")


def test_unknown_builder_and_wrong_types(tmp_path: Path, toy_dataset: Dataset, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", toy_dataset, {"kind": "transformer_xl"})
    fails(["train", str(cfg)], capsys, "model")
    cfg = write_config(tmp_path / "c.yaml", toy_dataset, HASHING)
    fails(["train", str(cfg), "--set", "batch_size=many"], capsys, "batch_size")
    fails(["train", str(cfg), "--set", "model.dim=[1, 2]"], capsys, "model.hashing_bag.dim")
    fails(["train", str(cfg), "--set", "epochs=-1"], capsys, "epochs")
    fails(["train", str(cfg), "--set", "learning_rte=0.1"], capsys, "learning_rte")


def test_labels_differ_from_pretrained_model(
    tmp_path: Path, toy_dataset: Dataset, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoConfig

    headed = tmp_path / "headed"
    config = AutoConfig.from_pretrained(tiny_bert)
    config.id2label = {0: "negative", 1: "positive"}
    config.label2id = {"negative": 0, "positive": 1}
    for item in tiny_bert.iterdir():
        headed.mkdir(exist_ok=True)
        (headed / item.name).write_bytes(item.read_bytes())
    config.save_pretrained(headed)
    cfg = write_config(tmp_path / "c.yaml", toy_dataset, {"kind": "pretrained", "name_or_path": str(headed)})
    fails(["train", str(cfg)], capsys, "differ", "positive")


def test_empty_split_and_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = pd.DataFrame({"input": pd.Series([], dtype=str), "target": pd.Series([], dtype=str)})
    data = write_dataset(
        "holes", "x1", {"train": toy_frame(50, 1), "validation": empty, "test": toy_frame(20, 2)}
    )
    fails(["train", str(write_config(tmp_path / "c.yaml", data, HASHING))], capsys, "empty")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(cfg.read_text().replace(str(data.path), "never-prepared"))
    fails(["train", str(cfg)], capsys, "never-prepared")
    one_label = make_toy("mono", 40, labels=("da",))
    fails(["train", str(write_config(cfg, one_label, HASHING))], capsys, "label")


def test_resume_without_run_or_checkpoint(tmp_path: Path, toy_dataset: Dataset, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", toy_dataset, HASHING)
    fails(["train", str(cfg), "--resume"], capsys, "nothing to resume")

    from miniml import paths
    from miniml.config import load_config

    config = load_config(ClassificationConfig, cfg)
    run_dir = paths.runs_dir() / "toy" / config_fingerprint(config)
    run_dir.mkdir(parents=True)
    state = RunState(
        model_name="toy",
        config_fingerprint=config_fingerprint(config),
        dataset={"name": toy_dataset.name, "fingerprint": toy_dataset.fingerprint},
        labels=["da", "nn", "sv"],
    )
    (run_dir / STATE_FILE).write_text(state.model_dump_json())
    partial = run_dir / "checkpoint-5"  # killed while writing: no seal
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    fails(["train", str(cfg), "--resume"], capsys, "no complete checkpoint")
    assert not partial.exists()

    corrupted = run_dir / "checkpoint-10"
    corrupted.mkdir()
    (corrupted / "model.safetensors").write_bytes(b"x" * 100)
    seal_checkpoint(corrupted, 10)
    (corrupted / "model.safetensors").write_bytes(b"y" * 100)
    assert (corrupted / SEAL).is_file()
    fails(["train", str(cfg), "--resume"], capsys, "corrupted", "checkpoint-10")


def test_predict_and_evaluate_bad_input(tmp_path: Path, toy_dataset: Dataset, capsys) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "hej"}) + "\n")
    fails(
        ["predict", str(tmp_path / "nope"), "--input", str(source), "--output", str(tmp_path / "o")], capsys
    )
    fails(["evaluate", str(tmp_path), str(toy_dataset.path)], capsys, "not a miniml model folder")
    fails(["evaluate", "models:/ghost@champion", str(toy_dataset.path)], capsys, "ghost")


def test_unknown_best_metric(tmp_path: Path, toy_dataset: Dataset, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", toy_dataset, HASHING)
    fails(["train", str(cfg), "--set", "metric_for_best=f1"], capsys, "metric_for_best", "f1/<label>")

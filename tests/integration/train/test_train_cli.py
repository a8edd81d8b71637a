"""`miniml train | evaluate | predict` through the CLI on a tiny model, with a real embedded MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from train_support import write_config

from miniml.cli import main
from miniml.data.dataset import Dataset
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import get_version

HASHING = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.mark.usefixtures("mlflow_store")
def test_train_evaluate_predict(
    tmp_path: Path, toy_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "train.yaml", toy_dataset, HASHING)
    code, out, err = run_cli(["train", str(cfg)], capsys)
    assert code == 0, err
    assert "trained toy: version 1" in out

    version = get_version("toy", 1)
    assert version.info is not None and version.info.metrics["accuracy"] > 0.9
    run = MlflowClient(default_tracking_uri()).get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.kind"] == "hashing_bag"
    assert run.data.metrics["test_accuracy"] == pytest.approx(version.info.metrics["accuracy"])
    history = MlflowClient(default_tracking_uri()).get_metric_history(version.run_id, "loss")
    assert len(history) >= 3 and history[-1].value < history[0].value  # per-step metrics, loss went down
    artifacts = {
        a.path for a in MlflowClient(default_tracking_uri()).list_artifacts(version.run_id, "evaluation")
    }
    assert {"evaluation/confusion_matrix.png", "evaluation/curves.png", "evaluation/report.md"} <= artifacts

    code, out, err = run_cli(
        ["evaluate", "models:/toy/1", str(toy_dataset.path), "--out", str(tmp_path / "r")], capsys
    )
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["accuracy"] == pytest.approx(version.info.metrics["accuracy"])
    assert (tmp_path / "r" / "confusion_matrix.png").is_file()

    frame = toy_dataset.split("test")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(frame["input"])))
    target = tmp_path / "out.jsonl"
    code, _, err = run_cli(
        ["predict", "models:/toy/1", "--input", str(source), "--output", str(target)], capsys
    )
    assert code == 0, err
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(frame)))
    accuracy = sum(r["label"] == t for r, t in zip(rows, frame["target"], strict=True)) / len(frame)
    assert accuracy == pytest.approx(metrics["accuracy"])  # predict agrees with evaluate
    assert all({x["label"] for x in r["top_k"]} == {"da", "nn", "sv"} for r in rows)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "hej"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    code, _, err = run_cli(
        ["predict", "models:/toy/1", "--input", str(bad), "--output", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "bad.jsonl:2" in err and '"text"' in err
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))  # nothing half-written


@pytest.mark.usefixtures("mlflow_store")
def test_fresh_run_ends_the_interrupted_one(
    tmp_path: Path, toy_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniml import paths
    from miniml.config import load_config
    from miniml.registry.tracking import RunTracker
    from miniml.tasks.classification import ClassificationConfig
    from miniml.train.session import STATE_FILE, RunState, config_fingerprint

    cfg = write_config(tmp_path / "train.yaml", toy_dataset, HASHING, max_steps=5, register_model=False)
    config = load_config(ClassificationConfig, cfg)
    stale = RunTracker("toy").start()  # left RUNNING, as by a SIGKILL
    run_dir = paths.runs_dir() / "toy" / config_fingerprint(config)
    run_dir.mkdir(parents=True)
    state = RunState(
        model_name="toy",
        config_fingerprint=config_fingerprint(config),
        dataset={"name": toy_dataset.name, "fingerprint": toy_dataset.fingerprint},
        labels=["da", "nn", "sv"],
        run_id=stale.run_id,
    )
    (run_dir / STATE_FILE).write_text(state.model_dump_json())
    code, out, err = run_cli(["train", str(cfg)], capsys)
    assert code == 0, err
    assert "not registered" in out
    client = MlflowClient(default_tracking_uri())
    assert client.get_run(stale.run_id).info.status == "KILLED"
    assert json.loads((run_dir / STATE_FILE).read_text())["run_id"] != stale.run_id

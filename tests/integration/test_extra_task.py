"""A task registered from one module (``tests/regression_task.py``) runs through every step, unchanged miniml:
``miniml train`` (tracked, registered), ``evaluate``, ``predict``, the server's ``/predict`` route, and a
clear refusal from ``optimize`` (the task offers no optimization)."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import seed_embedded_store, shared_blank_store

from miniml.cli import main
from miniml.data.dataset import Dataset, write_dataset
from miniml.registry import store
from miniml.serve.app import create_app
from miniml.serve.settings import ServeSettings
from miniml.tasks import register_task
from miniml.tasks.registry import unregister_task
from regression_task import RegressionTask

UP, DOWN = ["rise", "climb", "soar", "gain", "grow"], ["fall", "drop", "sink", "lose", "shrink"]


@pytest.fixture
def regression(miniml_home: Path) -> Iterator[RegressionTask]:
    seed_embedded_store(miniml_home, shared_blank_store())
    task = register_task(RegressionTask())
    yield task
    unregister_task(task.name)


def rows(n: int, seed: int) -> pd.DataFrame:
    """Texts of up/down words; the target is ten times the share of up words (a mean-pooled bag learns it)."""
    rng = random.Random(seed)
    inputs, targets = [], []
    for _ in range(n):
        words = [rng.choice(UP if rng.random() < rng.random() else DOWN) for _ in range(rng.randint(3, 9))]
        inputs.append(" ".join(words))
        targets.append(str(10 * sum(w in UP for w in words) / len(words)))
    return pd.DataFrame({"input": inputs, "target": targets})


def dataset() -> Dataset:
    splits = {"train": rows(400, 1), "validation": rows(60, 2), "test": rows(80, 3)}
    return write_dataset("updown", "regression-1", splits)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_an_extra_task_trains_evaluates_predicts_and_serves(
    regression: RegressionTask, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset()
    config = tmp_path / "train.yaml"
    model = "{kind: hashing_bag, buckets: 4096, dim: 16, char_ngrams: [1, 1], word_ngrams: 1, sparse: true}"
    config.write_text(
        f"model_name: updown\ndataset: {data.path}\ntask: regression\nmodel: {model}\n"
        "optimizer: adagrad\nlearning_rate: 0.5\nepochs: 8\nbatch_size: 16\nthreads: 1\nseed: 3\n"
    )
    code, out, err = cli(capsys, "train", str(config))
    assert code == 0, err
    assert "trained updown: version 1" in out
    version = store.get_version("updown", 1)
    assert version.info is not None and version.info.task == "regression"
    assert version.info.metrics["r2"] > 0.8  # scored on the test split by the task, through its runtime

    code, out, err = cli(capsys, "evaluate", "models:/updown/1", str(data.path))
    assert code == 0, err
    metrics = json.loads(out)
    assert set(metrics) == {"mae", "rmse", "r2"} and metrics["r2"] == pytest.approx(
        version.info.metrics["r2"]
    )

    texts = ["rise climb soar", "fall drop sink", "rise fall"]
    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    assert cli(capsys, "predict", "models:/updown/1", "--input", str(src), "--output", str(dest))[0] == 0
    answers = [json.loads(line) for line in dest.read_text().splitlines()]
    values = [a["value"] for a in answers]
    assert [a["id"] for a in answers] == [0, 1, 2] and values[0] > values[2] > values[1]

    settings = ServeSettings.model_validate({"models": ["models:/updown/1"], "cache": {"backend": "none"}})
    with TestClient(create_app(settings)) as client:
        listed = client.get("/v1/models").json()["models"]
        assert [(m["name"], m["task"]) for m in listed] == [("updown", "regression")]
        served = client.post("/v1/models/updown/predict", json={"inputs": texts})
        assert served.status_code == 200, served.text
        assert [p["value"] for p in served.json()["predictions"]] == pytest.approx(values, abs=1e-5)
        assert client.post("/v1/models/updown/predict", json={"inputs": []}).status_code == 422

    code, _, err = cli(capsys, "optimize", "models:/updown/1", "--int8")
    last = err.strip().splitlines()[-1]  # (the server's access log may still flush before it)
    assert code == 2 and last.startswith("error: miniml optimize supports") and "regression model" in last

"""``--backend ray`` on a real local Ray cluster (one per module): training with 2 DDP workers and batch
prediction on an actor pool give what the local path gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from train_support import write_config

from miniml.cli import main
from miniml.data.dataset import Dataset
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import get_version

ray = pytest.importorskip("ray")
HASHING = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    """A small local cluster for the module: 3 CPUs (2 workers + Ray Train's controller), 200 MB store."""
    from miniml.backends.ray.cluster import quiet_ray

    quiet_ray()
    ray.init(
        num_cpus=3,
        object_store_memory=200 * 1024 * 1024,
        include_dashboard=False,
        namespace="miniml-tests",
        logging_level="ERROR",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def predictions(
    model: str, source: Path, target: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> str:
    args = ["predict", model, "--input", str(source), "--output", str(target), "--batch-size", "16", *extra]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    return target.read_text(encoding="utf-8")


@pytest.mark.usefixtures("mlflow_store")
def test_train_on_two_workers_then_predict(
    tmp_path: Path, toy_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "train.yaml", toy_dataset, HASHING, model_name="toy")
    code, out, err = run_cli(["train", str(cfg), "--backend", "ray", "--set", "backend.workers=2"], capsys)
    assert code == 0, err
    assert "trained toy: version 1" in out

    client = MlflowClient(default_tracking_uri())
    versions = client.search_model_versions("name='toy'")
    assert len(versions) == 1  # rank 0 alone registers
    version = get_version("toy", 1)
    assert version.info is not None and version.info.metrics["accuracy"] > 0.9
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["miniml.backend"] == "ray" and run.data.tags["miniml.ray.workers"] == "2"
    assert run.data.metrics["ray/workers"] == 2 and run.data.metrics["ray/worker_1/examples_per_s"] > 0
    history = client.get_metric_history(version.run_id, "loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps))  # logged once per step (rank 0 only), not once per worker
    assert len(history) >= 3 and history[-1].value < history[0].value  # the loss went down

    # the same config trained locally: the same schedule and an equal score
    local = write_config(tmp_path / "local.yaml", toy_dataset, HASHING, model_name="toy_local")
    code, out, err = run_cli(["train", str(local)], capsys)
    assert code == 0, err
    local_info = get_version("toy_local", 1).info
    assert local_info is not None
    assert version.info.metrics["macro_f1"] == pytest.approx(local_info.metrics["macro_f1"], abs=0.05)
    local_steps = [m.step for m in client.get_metric_history(get_version("toy_local", 1).run_id, "loss")]
    assert max(steps) == max(local_steps)

    # the model folder is an ordinary one: predicted from the registry, locally and on Ray, identically
    frame = toy_dataset.split("test")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(frame["input"])))
    here = predictions("models:/toy/1", source, tmp_path / "local.jsonl", capsys)
    there = predictions("models:/toy/1", source, tmp_path / "ray.jsonl", capsys, "--backend", "ray")
    assert there == here and len(here.splitlines()) == len(frame)


def test_predict_same_output_jsonl_and_parquet(
    tmp_path: Path, toy_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniml.backends.ray.predict import line_ranges

    model = tiny_model(tmp_path)
    texts = list(toy_dataset.split("train")["input"]) * 4  # 1,200 rows (~64 kB): several read ranges
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": t, "id": f"r{i}"}) for i, t in enumerate(texts)]
    lines.insert(7, "")  # a blank line is skipped by both paths
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(line_ranges(source, 2)) > 2  # the file really is cut in pieces
    here = predictions(str(model), source, tmp_path / "local.jsonl", capsys, "--top-k", "2")
    there = predictions(
        str(model),
        source,
        tmp_path / "ray.jsonl",
        capsys,
        "--top-k",
        "2",
        "--backend",
        "ray",
        "--set",
        "backend.workers=2",
    )
    assert there == here
    assert [json.loads(line)["id"] for line in there.splitlines()] == [f"r{i}" for i in range(len(texts))]

    parquet = tmp_path / "in.parquet"
    pd.DataFrame({"text": texts, "id": range(len(texts))}).to_parquet(parquet)
    here = predictions(str(model), parquet, tmp_path / "local_pq.jsonl", capsys)
    there = predictions(str(model), parquet, tmp_path / "ray_pq.jsonl", capsys, "--backend", "ray")
    assert there == here and len(there.splitlines()) == len(texts)


def test_predict_bad_line_on_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_model(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "hej"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    target = tmp_path / "out.jsonl"
    args = ["predict", str(model), "--input", str(bad), "--output", str(target), "--backend", "ray"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "bad.jsonl:2" in err and '"text"' in err
    assert err.count("error:") == 1
    assert not target.exists() and not list(tmp_path.glob(".out.jsonl*"))  # nothing half-written


def tiny_model(tmp_path: Path) -> Path:
    import torch

    from miniml.modelfolder import ModelInfo
    from miniml.models import HashingBagSpec
    from miniml.models.folder import save_model_folder
    from miniml.models.registry import get_builder

    spec = HashingBagSpec(buckets=1024, dim=8)
    featurizer = spec.make_featurizer([])
    torch.manual_seed(0)
    module = get_builder("hashing_bag")(spec, ["da", "nn", "sv"], featurizer)
    info = ModelInfo(
        name="demo",
        task="classification",
        architecture="hashing_bag",
        labels=["da", "nn", "sv"],
        preprocessing=featurizer.preprocessing(),
    )
    folder = tmp_path / "model"
    if not folder.exists():
        save_model_folder(folder, module, featurizer, spec, info)
    return folder


def test_prepare_same_dataset_as_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniml.data.dataset import open_dataset

    config = prepare_project(tmp_path)
    built = {}
    for backend in ("local", "ray"):
        monkeypatch.setenv("MINIML_HOME", str(tmp_path / f"home-{backend}"))
        code, _, err = run_cli(["data", "prepare", str(config), "--backend", backend], capsys)
        assert code == 0, err
        built[backend] = open_dataset("toy")
    here, there = built["local"], built["ray"]
    assert there.fingerprint == here.fingerprint
    assert there.manifest.counts == here.manifest.counts and there.manifest.dropped == here.manifest.dropped
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(there.split(split), here.split(split))


PREPARE = """
name: toy
sources:
  - path: reviews.csv
    format: csv
    input: text
    target: stars
    label_map: {"1": neg, "2": neg, "4": pos, "5": pos, "3": null}
  - {path: extra.txt, format: text, input: text, label: pos, split: test}
clean: {min_chars: 3}
split: {train: 0.6, validation: 0.2, test: 0.2, seed: 1}
"""


def prepare_project(tmp_path: Path) -> Path:
    """Two sources with a duplicate, a too-short, an empty and an excluded-label row."""
    lines = ["text,stars"] + [f"review number {i},{1 + i % 5}" for i in range(200)]
    lines += ["review number 1,1", "ok,5", "   ,4"]
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "extra.txt").write_text("review number 0\nbrand new text\n")
    (tmp_path / "data.yaml").write_text(PREPARE)
    return tmp_path / "data.yaml"

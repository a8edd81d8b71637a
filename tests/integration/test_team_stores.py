"""Shared stores without a server: PostgreSQL as the MLflow store, an S3 bucket (moto's server) for artifacts.

Member A pushes a dataset to the dataset hub, trains on ``s3://.../NAME/FINGERPRINT``, promotes, evaluates
and optimizes; member B, with an empty MINIML_HOME and the same settings, resolves and predicts with
what A registered. Every byte of the models is in the bucket and every record in PostgreSQL.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_support import make_toy, write_config

from miniml.cli import main
from store_support import S3Server, create_database, moto_s3, postgres_server, s3_env

pytestmark = pytest.mark.services
HASHING = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as uri:
        yield uri


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


@pytest.fixture
def team(postgres: str, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A fresh database and bucket; the environment of a member who has S3 credentials."""
    name = f"t{uuid.uuid4().hex[:10]}"
    db = create_database(postgres, name)
    bucket = s3.make_bucket(name)
    s3_env(monkeypatch, s3.endpoint)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", db)
    monkeypatch.setenv("MINIML_ARTIFACT_ROOT", f"s3://{bucket}/mlflow")
    return db, bucket


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_two_homes_share_postgres_and_s3(
    team: tuple[str, str],
    s3: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow.tracking import MlflowClient

    db, bucket = team
    make_toy()
    code, out, err = cli(capsys, "data", "push", "toy", f"s3://{bucket}/datasets")
    assert code == 0 and "pushed toy/fp3003" in out, err
    remote = f"s3://{bucket}/datasets/toy/fp3003"

    # member A trains on the dataset hub's copy (pulled into a fresh home), promotes, evaluates, optimizes
    monkeypatch.setenv("MINIML_HOME", str(tmp_path / "home-a"))
    cfg = write_config(tmp_path / "train.yaml", SimpleNamespace(path=remote), HASHING)  # type: ignore[arg-type]
    code, out, err = cli(capsys, "train", str(cfg))
    assert code == 0 and "trained toy: version 1" in out, err
    client = MlflowClient(db)
    version = client.get_model_version("toy", "1")
    assert version.source.startswith(f"s3://{bucket}/mlflow/toy/")
    run = client.get_run(version.run_id)
    inputs = run.inputs.dataset_inputs
    assert inputs[0].dataset.source_type == "s3"
    assert json.loads(inputs[0].dataset.source) == {"uri": remote}
    assert run.data.tags["dataset.uri"] == remote
    assert (tmp_path / "home-a" / "datasets" / "toy" / "fp3003" / "manifest.json").is_file()
    assert not (tmp_path / "home-a" / "mlflow").exists()  # nothing went to the embedded store

    code, out, err = cli(capsys, "models", "promote", "toy", "1")
    assert code == 0, err
    code, out, err = cli(capsys, "evaluate", "models:/toy@champion", remote, "--out", str(tmp_path / "ev"))
    assert code == 0, err
    accuracy = json.loads(out)["accuracy"]
    assert accuracy > 0.9
    code, out, err = cli(capsys, "optimize", "models:/toy@champion", "--int8", "--set", "measure.repeats=3")
    assert code == 0 and "models:/toy/2" in out, err
    assert client.get_model_version("toy", "2").source.startswith(f"s3://{bucket}/mlflow/")
    model_keys = s3.keys(bucket, "mlflow/toy/")
    assert any(k.endswith("/model/model.safetensors") for k in model_keys)

    # member B: empty home, same settings; the champion comes from PostgreSQL + S3
    monkeypatch.setenv("MINIML_HOME", str(tmp_path / "home-b"))
    texts = tmp_path / "in.jsonl"
    texts.write_text(json.dumps({"text": "jag heter anna och bor i stockholm"}) + "\n")
    out_file = tmp_path / "out.jsonl"
    code, _, err = cli(
        capsys, "predict", "models:/toy@champion", "--input", str(texts), "--output", str(out_file)
    )
    assert code == 0, err
    assert json.loads(out_file.read_text())["label"] == "sv"
    assert (tmp_path / "home-b" / "models" / "toy" / "1" / "miniml.json").is_file()


@pytest.mark.parametrize("problem", ["missing bucket", "unreachable endpoint", "no credentials"])
def test_train_refuses_a_broken_artifact_store_before_training(
    problem: str,
    team: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow.tracking import MlflowClient

    db, bucket = team
    if problem == "missing bucket":
        monkeypatch.setenv("MINIML_ARTIFACT_ROOT", f"s3://{bucket}-gone/mlflow")
        expected = "does not exist"
    elif problem == "unreachable endpoint":
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9")
        expected = "cannot reach the S3 endpoint"
    else:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        expected = "no S3 credentials found"
    dataset = make_toy()
    cfg = write_config(tmp_path / "train.yaml", dataset, HASHING)
    code, out, err = cli(capsys, "train", str(cfg))
    assert code == 2, out
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "miniml-test-secret" not in err
    assert MlflowClient(db).search_runs(experiment_ids=["0"]) == []
    assert MlflowClient(db).search_registered_models() == []

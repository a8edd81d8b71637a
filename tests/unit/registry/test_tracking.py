"""RunTracker and param flattening against a real embedded MLflow store."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from miniml.data.dataset import write_dataset
from miniml.errors import ConfigError, RegistryError
from miniml.registry.backend import default_tracking_uri, get_client
from miniml.registry.tracking import RunTracker, end_status, flatten_params


def client() -> MlflowClient:
    return get_client()


def test_default_tracking_uri_is_embedded_sqlite_under_home(
    miniml_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_tracking_uri() == f"sqlite:///{miniml_home / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert default_tracking_uri() == "http://tracking.example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "  ")
    assert default_tracking_uri().startswith("sqlite:///")


def test_flatten_params_nests_stringifies_and_clips() -> None:
    flat = flatten_params(
        {"optim": {"lr": 0.001, "betas": [0.9, 0.99]}, "epochs": 3, "tag": None, "bad key!": "x"}
    )
    assert flat["optim.lr"] == "0.001"
    assert flat["optim.betas"] == "[0.9,0.99]"
    assert flat["epochs"] == "3"
    assert flat["tag"] == "None"
    assert flat["bad key_"] == "x"
    assert set(flatten_params({"../up": 1, "a/./b": 2, "/abs": 3})) == {"_.._up", "a_._b", "_abs"}
    long = flatten_params({"text": "a" * 10_000})["text"]
    assert len(long) == 6000 and long.endswith("...")


def test_run_logs_params_metrics_environment_and_finishes(miniml_home: Path) -> None:
    with RunTracker("exp-a", run_name="first") as run:
        run.log_params({"model": {"dim": 64}, "lr": 0.1})
        run.set_tags({"../odd key": "kept"})
        run.log_metrics({"loss": 2.0}, step=1)
        run.log_metrics({"loss": 1.5}, step=2)
    got = client().get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "first"
    assert got.data.params == {"model.dim": "64", "lr": "0.1"}
    history = client().get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]
    tags = got.data.tags
    assert tags["_.._odd key"] == "kept"
    assert tags["version.miniml"] and tags["version.mlflow"].startswith("3.")
    assert int(tags["hw.cores"]) >= 1 and float(tags["hw.ram_gb"]) > 0 and tags["hw.cpu"]
    experiment = client().get_experiment(got.info.experiment_id)
    assert experiment.artifact_location.startswith((miniml_home / "mlflow" / "artifacts").as_uri())


def test_failed_and_killed_runs_are_marked() -> None:
    with pytest.raises(ValueError), RunTracker("exp-b") as failing:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), RunTracker("exp-b") as killed:
        raise KeyboardInterrupt
    assert client().get_run(failing.run_id).info.status == "FAILED"
    assert client().get_run(killed.run_id).info.status == "KILLED"


def test_end_status() -> None:
    assert end_status(None) == "FINISHED"
    assert end_status(SystemExit(0)) == "FINISHED"
    assert end_status(SystemExit(2)) == "FAILED"
    assert end_status(KeyboardInterrupt()) == "KILLED"
    assert end_status(RuntimeError()) == "FAILED"


def test_resume_continues_the_same_run() -> None:
    with pytest.raises(KeyboardInterrupt), RunTracker("exp-c") as first:
        first.log_params({"lr": 0.1})
        first.log_metrics({"loss": 3.0}, step=1)
        raise KeyboardInterrupt
    with RunTracker("exp-c", run_id=first.run_id) as resumed:
        assert client().get_run(resumed.run_id).info.status == "RUNNING"
        resumed.log_params({"lr": 0.1})  # same value again: fine
        resumed.log_metrics({"loss": 2.0}, step=2)
        with pytest.raises(ConfigError, match="already has param lr"):
            resumed.log_params({"lr": 0.5})
    assert resumed.run_id == first.run_id
    got = client().get_run(first.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.tags["miniml.resumes"] == "1"
    assert [m.step for m in client().get_metric_history(first.run_id, "loss")] == [1, 2]


def test_resume_of_unknown_run_is_one_line_error() -> None:
    with pytest.raises(RegistryError, match="no MLflow run 0123abc") as err:
        RunTracker("exp-d", run_id="0123abc").start()
    assert "\n" not in str(err.value)


def test_artifacts_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{}")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png")
    (folder / "sub" / "b.png").write_bytes(b"png2")
    with RunTracker("exp-e") as run:
        run.log_artifact(tmp_path / "report.json")
        run.log_artifact(folder)
        run.log_artifact(folder, "figures")
        with pytest.raises(RegistryError, match="no such file"):
            run.log_artifact(tmp_path / "missing.txt")
    listed = {a.path for a in client().list_artifacts(run.run_id)}
    assert listed == {"report.json", "plots", "figures"}
    assert {a.path for a in client().list_artifacts(run.run_id, "figures/sub")} == {"figures/sub/b.png"}


def test_log_dataset_records_fingerprint_and_source(tmp_path: Path) -> None:
    frame = pd.DataFrame({"input": ["a", "b"], "target": ["x", "y"]})
    dataset = write_dataset("toy", "abcdef0123456789", {"train": frame, "test": frame}, root=tmp_path)
    with RunTracker("exp-f") as run:
        run.log_dataset(dataset)
        run.log_dataset(dataset, context="evaluation")
    got = client().get_run(run.run_id)
    inputs = got.inputs.dataset_inputs
    assert {i.dataset.digest for i in inputs} == {"abcdef0123456789"}
    assert all(i.dataset.name == "toy" for i in inputs)
    assert str(dataset.path.resolve()) in inputs[0].dataset.source
    contexts = {t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert "training" in contexts
    assert got.data.tags["dataset.fingerprint"] == "abcdef0123456789"


def test_two_trackers_and_a_thread_do_not_interfere() -> None:
    errors: list[BaseException] = []

    def worker(run: RunTracker) -> None:
        try:
            for step in range(5):
                run.log_metrics({"thread_metric": float(step)}, step=step)
        except BaseException as err:
            errors.append(err)

    with RunTracker("exp-g", run_name="outer") as outer, RunTracker("exp-h", run_name="inner") as inner:
        thread = threading.Thread(target=worker, args=(inner,))
        thread.start()
        outer.log_metrics({"outer_metric": 1.0})
        thread.join()
    assert not errors
    assert outer.run_id != inner.run_id
    assert "thread_metric" not in client().get_run(outer.run_id).data.metrics
    assert len(client().get_metric_history(inner.run_id, "thread_metric")) == 5
    assert client().get_run(inner.run_id).info.status == "FINISHED"

"""``miniml job``: what a job runs and carries, decided before any cluster is asked (no Ray started here)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from miniml.backends.ray import jobs
from miniml.backends.ray.cluster import JOB_CONFIG_VAR, PACKAGE, _init_args, without_job_env
from miniml.cli import main
from miniml.compute import BackendConfig
from miniml.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "nordic-langid"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_train_and_pipeline_jobs_run_the_config_from_its_folder() -> None:
    train = jobs.JobSpec(EXAMPLE / "train.yaml", ("epochs=1",), backend="ray", resume=True)
    assert train.kind == "train" and train.project == EXAMPLE
    assert shlex.split(train.entrypoint()) == [
        "python", "-m", "miniml", "train", "train.yaml", "--set=epochs=1", "--backend", "ray", "--resume"
    ]  # fmt: skip
    pipeline = jobs.JobSpec(EXAMPLE / "pipeline.yaml", python="/opt/venv/bin/python")
    assert pipeline.kind == "pipeline"
    assert pipeline.entrypoint() == "/opt/venv/bin/python -m miniml pipeline run pipeline.yaml"
    env = jobs.runtime_env(pipeline)
    assert env["working_dir"] == str(EXAMPLE) and env["py_modules"] == [str(PACKAGE)]


def test_a_config_in_a_subfolder_of_the_working_dir(tmp_path: Path) -> None:
    config = write(tmp_path / "configs" / "t.yaml", "model_name: m\ndataset: d\n")
    spec = jobs.JobSpec(config, working_dir=tmp_path)
    assert spec.arguments()[:2] == ["train", "configs/t.yaml"]
    with pytest.raises(ConfigError, match="outside the job's working directory"):
        jobs.JobSpec(config, working_dir=tmp_path / "elsewhere")


def test_predict_job_config_becomes_predict_arguments(tmp_path: Path) -> None:
    config = write(
        tmp_path / "predict.yaml",
        "model: models:/toy/1\ninput: texts.jsonl\noutput: /shared/out.jsonl\ntop_k: 2\n"
        "backend: {workers: 3, placement: spread}\n",
    )
    spec = jobs.JobSpec(config, ("batch_size=64",), backend="ray")
    assert spec.kind == "predict"
    assert spec.arguments() == [
        "predict", "models:/toy/1", "--input", "texts.jsonl", "--output", "/shared/out.jsonl",
        "--batch-size", "64", "--top-k", "2",
        "--set=backend.type=ray", "--set=backend.workers=3", "--set=backend.placement=spread",
    ]  # fmt: skip
    relative = write(tmp_path / "rel.yaml", "model: m\ninput: in.jsonl\noutput: out.jsonl\n")
    with pytest.raises(ConfigError, match=r"output: .*must be an absolute path on the cluster"):
        jobs.JobSpec(relative).arguments()
    with pytest.raises(ConfigError, match="--resume applies to train and pipeline jobs"):
        jobs.JobSpec(config, resume=True)


def test_unknown_config_kind(tmp_path: Path) -> None:
    config = write(tmp_path / "serve.yaml", "models: [x]\n")
    with pytest.raises(ConfigError, match=r"cannot tell whether .* is a train, predict or pipeline config"):
        jobs.JobSpec(config)


def test_credentials_never_travel_with_a_job() -> None:
    env = {
        "MINIML_HOME": "/h",
        "TOKENIZERS_PARALLELISM": "false",
        "MINIML_SERVE__AUTH__KEYS_FILE": "keys.yaml",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SESSION_TOKEN": "t",
        "HF_TOKEN": "h",
        "MLFLOW_TRACKING_PASSWORD": "p",
        "MINIML_API_KEY": "k",
    }
    assert jobs.job_env(env) == {
        "MINIML_HOME": "/h",
        "TOKENIZERS_PARALLELISM": "false",
        "MINIML_SERVE__AUTH__KEYS_FILE": "keys.yaml",
    }


def test_jobs_api_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a GCS address is not the Jobs API
    assert jobs.api_address(None) == jobs.DEFAULT_API
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265/")
    assert jobs.api_address(None) == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "head2:8265")
    assert jobs.api_address(None) == "http://head2:8265"
    assert jobs.api_address("https://ray.example.com") == "https://ray.example.com"
    with pytest.raises(ConfigError, match="is not the Jobs API's http address"):
        jobs.api_address("ray://head:10001")


def test_unreachable_jobs_api_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["job", "status", "some-id", "--address", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith(
        "error: cannot reach the Ray Jobs API at http://127.0.0.1:9"
    )


def test_a_bad_config_fails_before_submitting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path / "t.yaml", "model_name: m\ndataset: d\nepochs: many\n")
    with pytest.raises(SystemExit) as exit_info:  # the address is never contacted
        main(["job", "submit", str(config), "--address", "http://127.0.0.1:9"])
    assert exit_info.value.code == 2 and "epochs" in capsys.readouterr().err


def test_failure_names_the_jobs_own_error_line() -> None:
    state = jobs.JobState("j1", "FAILED", "Job entrypoint command failed with exit code 2", "python -m", 2)
    logs = "Running entrypoint\nerror: no prepared dataset 'x' (run `miniml data prepare`)\n"
    failed = jobs.failure(state, logs)
    assert str(failed) == "job j1 failed (exit 2): no prepared dataset 'x' (run `miniml data prepare`)"
    assert failed.exit_code == 2
    crashed = jobs.JobState("j2", "FAILED", "Traceback\n  File x\nKeyError: 'k'\n", "python -m", None)
    assert str(jobs.failure(crashed, "")) == "job j2 failed: KeyError: 'k'" and crashed.exit_status == 1
    stopped = jobs.failure(jobs.JobState("j3", "STOPPED", "", "", None), "")
    assert str(stopped) == "job j3 was stopped" and stopped.exit_code == 130


def test_inside_a_job_ray_init_adds_only_what_the_job_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    job = {"working_dir": "gcs://a.zip", "py_modules": ["gcs://m.zip"], "env_vars": {"MINIML_HOME": "/h"}}
    mine = {"py_modules": ["/src/miniml"], "env_vars": {"MINIML_HOME": "/h", "X_Y": "1"}, "hook": "h"}
    assert without_job_env(mine, job) == {"env_vars": {"X_Y": "1"}, "hook": "h"}
    monkeypatch.setenv(JOB_CONFIG_VAR, json.dumps({"runtime_env": job, "metadata": {}}))
    monkeypatch.setenv("MINIML_HOME", "/h")
    section = BackendConfig.model_validate({"type": "ray"})
    args = _init_args(section, "10.0.0.1:6379")
    assert "py_modules" not in args["runtime_env"] and "MINIML_HOME" not in args["runtime_env"]["env_vars"]
    monkeypatch.delenv(JOB_CONFIG_VAR)
    assert _init_args(section, "10.0.0.1:6379")["runtime_env"]["py_modules"] == [str(PACKAGE)]


def test_the_client_env_is_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the client is built the chosen address wins and a local Ray token may switch Ray to token mode;
    afterwards this process's environment is as it was (other Ray clusters of the process are unaffected)."""
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with jobs._client_env():
        assert "RAY_ADDRESS" not in jobs.os.environ
    assert jobs.os.environ["RAY_ADDRESS"] == "10.0.0.1:6379" and "RAY_AUTH_MODE" not in jobs.os.environ
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # an explicit mode is respected and kept
    with jobs._client_env():
        assert jobs.os.environ["RAY_AUTH_MODE"] == "disabled"
    assert jobs.os.environ["RAY_AUTH_MODE"] == "disabled"

"""`miniml hub up` refuses a start that cannot work, before starting anything: one line, nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from miniml.cli import main
from store_support import S3Server, free_port, moto_s3, moto_s3_with_auth, s3_env

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3() as server:
        yield server


def hub_up(tmp_path: Path, capsys: pytest.CaptureFixture[str], **settings: object) -> tuple[int, str]:
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump({"port": free_port(), **settings}))
    with pytest.raises(SystemExit) as exit_info:
        main(["hub", "up", "--config", str(path)])
    return int(exit_info.value.code or 0), capsys.readouterr().err


def one_line(code: int, err: str, expected: str, home: Path) -> None:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err
    assert "s3cret" not in err and "miniml-test-secret" not in err
    assert not (home / "hub" / "hub.json").exists() and not (home / "hub" / "env").exists()


def test_unreachable_database(
    s3: S3Server,
    miniml_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3_env(monkeypatch, s3.endpoint)
    db = f"postgresql://team:s3cret@127.0.0.1:{free_port()}/mlflow"
    code, err = hub_up(tmp_path, capsys, backend_store_uri=db, artifacts_destination="s3://nowhere/x")
    one_line(
        code, err, "cannot connect to the hub's backend store postgresql://team:***@127.0.0.1", miniml_home
    )


@pytest.mark.parametrize("problem", ["missing bucket", "unreachable endpoint"])
def test_bad_artifact_store(
    problem: str,
    s3: S3Server,
    miniml_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3_env(monkeypatch, s3.endpoint)
    endpoint = s3.endpoint if problem == "missing bucket" else "http://127.0.0.1:9"
    code, err = hub_up(
        tmp_path,
        capsys,
        backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_destination="s3://no-such-bucket/mlflow",
        s3_endpoint_url=endpoint,
    )
    expected = "does not exist" if problem == "missing bucket" else "cannot reach the S3 endpoint"
    one_line(code, err, expected, miniml_home)


def test_wrong_credentials(
    miniml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with moto_s3_with_auth(tmp_path) as (server, keys):
        s3_env(monkeypatch, server.endpoint, **keys)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "miniml-test-secret")
        code, err = hub_up(
            tmp_path,
            capsys,
            backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifacts_destination="s3://team/mlflow",
        )
    one_line(code, err, "S3 refused the credentials", miniml_home)


def test_down_and_status_without_a_hub(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["hub", "down"])
    assert exit_info.value.code == 0 and "no hub is running" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["hub", "status"])
    assert exit_info.value.code == 1 and "hub: not running" in capsys.readouterr().out


def test_member_commands_fail_fast_when_the_hub_is_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "list"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: cannot reach the MLflow tracking server {url} (ConnectError)"), err

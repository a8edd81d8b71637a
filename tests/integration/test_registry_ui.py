"""`miniml ui`: a real MLflow UI process on the embedded store, and its one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "registry"))
from registry_support import make_model_folder, seed_embedded_store, shared_blank_store

from miniml.cli import main
from miniml.registry import store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def embedded(miniml_home: Path) -> None:
    seed_embedded_store(miniml_home, shared_blank_store())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_for(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the UI process exited early"
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.mark.usefixtures("embedded")
def test_ui_serves_the_embedded_store(miniml_home: Path, tmp_path: Path) -> None:
    mv = store.register_model("shown", make_model_folder(tmp_path / "m", name="shown"))
    port = free_port()
    env = {**os.environ, "MINIML_HOME": str(miniml_home), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "miniml", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so Ctrl-C below reaches it and its server only
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/health", proc, 240)
        status, body = get(base + "/ajax-api/2.0/mlflow/registered-models/search")
        assert status == 200 and [m["name"] for m in json.loads(body)["registered_models"]] == ["shown"]
        status, body = get(f"{base}/get-artifact?path=model/miniml.json&run_uuid={mv.run_id}")
        assert status == 200 and json.loads(body)["name"] == "shown"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0
    assert proc.stderr is not None and f"MLflow UI on http://127.0.0.1:{port}" in proc.stderr.read().decode()


def test_ui_errors_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["ui", "--port", str(port)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: cannot serve the UI on 127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    with pytest.raises(SystemExit) as exit_info:
        main(["ui"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "serves its own UI" in err

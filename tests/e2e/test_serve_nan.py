"""A model folder with NaN weights is never served, swapped in, written as NaN, or registered."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serve_support import REPO, ServerProcess, free_port, nan_model_copy, wait_until


def miniml(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "miniml", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_serving_a_nan_folder_fails_at_start_with_one_line(toy_model: Path, tmp_path: Path) -> None:
    broken = nan_model_copy(toy_model, tmp_path / "nan-model")
    done = miniml("serve", str(broken), "--port", str(free_port()), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "NaN or infinite" in lines[0], lines


def test_predict_refuses_nan_scores_and_writes_nothing(toy_model: Path, tmp_path: Path) -> None:
    broken = nan_model_copy(toy_model, tmp_path / "nan-model")
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "hej med dig"}\n')
    out = tmp_path / "out.jsonl"
    done = miniml("predict", str(broken), "--input", str(source), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 2 and not out.exists()
    assert done.stderr.startswith("error: ") and "NaN" in done.stderr and len(done.stderr.splitlines()) == 1


def test_alias_moved_to_a_nan_version_keeps_the_old_one_serving(toy_model: Path, tmp_path: Path) -> None:
    from miniml.registry.store import register_model, set_alias

    assert register_model("toy", toy_model).version == 1
    broken = nan_model_copy(toy_model, tmp_path / "nan-model")
    assert register_model("toy", broken).version == 2  # metrics copied from v1: finite, so it registers
    set_alias("toy", 1, "champion")
    server = ServerProcess(["models:/toy@champion", "--set", "alias_poll_s=0.2"], tmp_path).wait_ready()
    try:
        set_alias("toy", 2, "champion")
        wait_until(lambda: "cannot follow alias" in server.log(), 60, "the refused swap")
        time.sleep(0.5)  # more polls: the broken version is not retried until the alias moves again
        r = httpx.post(f"{server.url}/v1/models/toy/predict", json={"inputs": ["jag bor i stockholm"]})
        assert r.status_code == 200 and r.json()["version"] == 1
        assert 0 < r.json()["predictions"][0]["score"] <= 1
        assert "NaN or infinite" in server.log() and server.log().count("cannot follow alias") == 1
        assert httpx.get(f"{server.url}/readyz").json()["models"] == {"toy": 1}
    finally:
        assert server.terminate() == 0


def test_registering_non_finite_test_metrics_is_refused(toy_model: Path, tmp_path: Path) -> None:
    from miniml.errors import RegistryError
    from miniml.modelfolder import read_info, write_info
    from miniml.registry.store import register_model

    broken = nan_model_copy(toy_model, tmp_path / "nan-model")
    info = read_info(broken)
    write_info(broken, info.model_copy(update={"metrics": {**info.metrics, "loss": float("nan")}}))
    with pytest.raises(RegistryError, match="loss are not finite"):
        register_model("toy", broken)

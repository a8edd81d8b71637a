"""`miniml train --resume` after SIGKILL continues from the last sealed checkpoint, in the same MLflow run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from train_support import write_config

from miniml import paths
from miniml.data.dataset import Dataset
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import get_version
from miniml.train.checkpoints import SEAL

REPO = Path(__file__).resolve().parents[3]


def cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "miniml", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for_seal(root: Path, proc: subprocess.Popen[str], timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sealed = sorted(root.glob(f"toy/*/checkpoint-*/{SEAL}"))
        if sealed:
            return sealed[0].parent
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    pytest.fail("no checkpoint within the timeout")


@pytest.mark.usefixtures("mlflow_store")
def test_resume_after_sigkill(tmp_path: Path, toy_dataset: Dataset) -> None:
    model = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}
    cfg = write_config(
        tmp_path / "train.yaml",
        toy_dataset,
        model,
        max_steps=80,
        batch_size=8,
        checkpoint_steps=20,
        eval_steps=20,
        early_stopping_patience=None,
    )
    first = cli("train", str(cfg))
    checkpoint = wait_for_seal(paths.runs_dir(), first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    state = json.loads((checkpoint.parent / "state.json").read_text())
    assert state["status"] == "running" and state["run_id"]

    second = cli("train", str(cfg), "--resume")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    version = get_version("toy", 1)
    assert version.run_id == state["run_id"]  # the same MLflow run, continued
    client = MlflowClient(default_tracking_uri())
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["miniml.resumes"] == "1"
    steps = [m.step for m in client.get_metric_history(state["run_id"], "loss")]
    assert max(steps) >= 75  # reached the end of the schedule
    assert json.loads((checkpoint.parent / "state.json").read_text())["status"] == "finished"

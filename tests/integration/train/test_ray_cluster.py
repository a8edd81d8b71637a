"""A real two-node Ray cluster on loopback (with its Jobs API), for one module:

- ``miniml job``: a tiny train config submitted with ``--follow`` trains on both nodes and registers one
  version; a failing config exits non-zero with the job's own error line; ``status``, ``logs``, ``list``
  and ``stop`` work on the jobs;
- ``--resume``: a Ray training run whose driver is killed after Ray kept a checkpoint is finished by
  ``miniml train --resume``, in the same MLflow run, with one registered version.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ray_support import LocalCluster, local_cluster
from train_support import write_config

from miniml import paths
from miniml.cli import main
from miniml.data.dataset import Dataset
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import get_version

pytest.importorskip("ray")
HASHING = {"kind": "hashing_bag", "buckets": 4096, "dim": 16}
REPO = Path(__file__).resolve().parents[3]
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it kept


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A head (2 CPUs: a worker and Ray Train's controller) and a second node (1 CPU: the other worker)."""
    with local_cluster((2, 1)) as running:
        yield running


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.mark.usefixtures("mlflow_store")
def test_submit_train_job_then_a_failing_one(
    tmp_path: Path, toy_dataset: Dataset, cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    address = ["--address", cluster.jobs_api]
    project = tmp_path / "project"
    project.mkdir()
    backend = {"type": "ray", "workers": 2, "placement": "spread"}
    config = write_config(project / "train.yaml", toy_dataset, HASHING, max_steps=30, backend=backend)
    code, out, err = run_cli(["job", "submit", str(config), "--follow", *address], capsys)
    assert code == 0, out[-3000:] + err
    job_id = out.split("submitted job ", 1)[1].split(":", 1)[0]
    assert "trained toy: version 1" in out  # the job's own output, streamed
    versions = MlflowClient(default_tracking_uri()).search_model_versions("name='toy'")
    assert len(versions) == 1
    run = MlflowClient(default_tracking_uri()).get_run(versions[0].run_id)
    assert run.data.tags["miniml.backend"] == "ray" and run.data.metrics["ray/workers"] == 2

    code, out, _ = run_cli(["job", "status", job_id, *address], capsys)
    assert code == 0 and out.startswith(f"{job_id}: SUCCEEDED")

    # a config that validates here but fails on the cluster: the job's error line, its exit status
    missing = project / "missing.yaml"
    missing.write_text(config.read_text().replace(str(toy_dataset.path), "no-such-dataset"))
    code, out, err = run_cli(["job", "submit", str(missing), "--follow", *address], capsys)
    failed_id = out.split("submitted job ", 1)[1].split(":", 1)[0]
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"error: job {failed_id} failed (exit 2): no prepared dataset")
    assert len(MlflowClient(default_tracking_uri()).search_model_versions("name='toy'")) == 1

    code, out, err = run_cli(["job", "status", failed_id, *address], capsys)
    assert code == 1 and f"{failed_id}: FAILED" in out and "no prepared dataset 'no-such-dataset'" in err
    code, out, _ = run_cli(["job", "logs", failed_id, *address], capsys)
    assert code == 0 and "error: no prepared dataset 'no-such-dataset'" in out
    code, out, _ = run_cli(["job", "list", *address], capsys)
    assert code == 0 and f"{job_id}  SUCCEEDED" in out and f"{failed_id}  FAILED" in out
    code, out, _ = run_cli(["job", "stop", failed_id, *address], capsys)
    assert code == 0 and out.strip() == f"{failed_id}: not running (FAILED)"

    # submitted without --follow: the command returns at once; stop ends the job
    code, out, err = run_cli(["job", "submit", str(config), *address], capsys)
    assert code == 0 and "miniml job logs" in err
    running_id = out.split("submitted job ", 1)[1].split(":", 1)[0]
    code, out, _ = run_cli(["job", "stop", running_id, *address], capsys)
    assert code == 0 and out.strip() == f"{running_id}: stopped (STOPPED)"
    code, _, err = run_cli(["job", "status", running_id, *address], capsys)
    assert code == 1 and f"error: job {running_id} was stopped" in err
    code, _, err = run_cli(["job", "status", "no-such-job", *address], capsys)
    assert code == 2 and "error: no job no-such-job on this cluster" in err


def train_process(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "miniml", "train", *args]
    return subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(pattern: str, proc: subprocess.Popen[str], timeout: float = 400) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(paths.runs_dir().glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"training ended before Ray kept a checkpoint: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {pattern} within {timeout:g} s")


@pytest.mark.usefixtures("mlflow_store")
def test_resume_a_ray_run_whose_driver_was_killed(
    tmp_path: Path, toy_dataset: Dataset, cluster: LocalCluster
) -> None:
    backend = {"type": "ray", "workers": 2, "address": cluster.gcs_address}
    # the first checkpoint at step 20, the kill soon after; the resumed run trains the 60 steps left
    schedule = {"max_steps": 80, "batch_size": 8, "checkpoint_steps": 20, "eval_steps": 20}
    cfg = write_config(
        tmp_path / "train.yaml",
        toy_dataset,
        HASHING,
        backend=backend,
        early_stopping_patience=None,
        **schedule,
    )
    first = train_process(str(cfg))
    snapshot = wait_for(f"toy/*/ray/{SNAPSHOT}", first)
    first.send_signal(signal.SIGKILL)  # the driver: Ray ends its workers, the checkpoint stays
    first.wait(timeout=60)
    state = json.loads((snapshot.parent.parent / "state.json").read_text())
    assert state["status"] == "running" and state["backend"] == "ray" and state["run_id"]
    kept = json.loads(snapshot.read_text())
    assert kept, "Ray kept no checkpoint"

    second = train_process(str(cfg), "--resume")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "trained toy: version 1" in out
    client = MlflowClient(default_tracking_uri())
    assert len(client.search_model_versions("name='toy'")) == 1
    assert get_version("toy", 1).run_id == state["run_id"]  # the same MLflow run, continued
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["miniml.resumes"] == "1"
    steps = [m.step for m in client.get_metric_history(state["run_id"], "loss")]
    assert set(range(5, 81, 5)) <= set(steps)  # every step logged, to the end of the schedule
    assert json.loads((snapshot.parent.parent / "state.json").read_text())["status"] == "finished"

"""A LoRA causal-LM run killed with SIGKILL resumes from its last sealed checkpoint, in the same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import tiny_generative as tg
from miniml import paths
from miniml.data.dataset import write_dataset
from miniml.registry.backend import default_tracking_uri
from miniml.registry.store import get_version
from miniml.runtime import resolve
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
        sealed = sorted(root.glob(f"digits-lora/*/checkpoint-*/{SEAL}"))
        if sealed:
            return sealed[0].parent
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    pytest.fail("no checkpoint within the timeout")


@pytest.mark.usefixtures("mlflow_store")
def test_lora_run_resumes_after_sigkill(tmp_path: Path) -> None:
    frame = pd.DataFrame({"input": [p[0] for p in tg.PAIRS], "target": [p[1] for p in tg.PAIRS]})
    data = write_dataset(
        "digits", "resume", {"train": frame, "validation": frame.head(4), "test": frame.head(4)}
    )
    lora = {"r": 4, "alpha": 8, "target_modules": ["c_attn"], "merge": False}
    config = {
        "model_name": "digits-lora",
        "dataset": str(data.path),
        "task": "causal_lm",
        "model": {
            "base": str(tg.model_path("gpt2")),
            "max_input_tokens": 32,
            "max_target_tokens": 12,
            "lora": lora,
        },
        "max_steps": 60,
        "batch_size": 4,
        "learning_rate": 0.02,
        "checkpoint_steps": 10,
        "eval_steps": 10,
        "logging_steps": 5,
        "early_stopping_patience": None,
        "threads": 1,
    }
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
    first = cli("train", str(cfg))
    checkpoint = wait_for_seal(paths.runs_dir(), first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert (checkpoint / "adapter_model.safetensors").is_file()  # peft checkpoints hold the adapter
    state = json.loads((checkpoint.parent / "state.json").read_text())
    assert state["status"] == "running" and state["run_id"]

    second = cli("train", str(cfg), "--resume")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    version = get_version("digits-lora", 1)
    assert version.run_id == state["run_id"]
    client = MlflowClient(default_tracking_uri())
    assert client.get_run(state["run_id"]).info.status == "FINISHED"
    assert max(m.step for m in client.get_metric_history(state["run_id"], "loss")) >= 55
    folder = Path(resolve("models:/digits-lora/1").path)
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()

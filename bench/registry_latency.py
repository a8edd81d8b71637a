"""Tracking and registry latencies on the embedded MLflow store (SQLite + local artifacts).

Prints: store creation / reopen, run start (with environment capture), metric logging, registering a model
folder, first resolve (download into the cache) vs cached resolve, and ``get_version`` by alias (what the
server polls to follow ``champion``). Runs in a throw-away MINIML_HOME.

    .venv/bin/python bench/registry_latency.py --size-mb 20 --polls 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> str:
    import torch

    from miniml.registry.environment import cpu_model

    return f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def model_folder(root: Path, size_mb: int) -> Path:
    from miniml.modelfolder import ModelInfo, write_info

    folder = root / "model"
    folder.mkdir(parents=True)
    info = ModelInfo(
        name="bench",
        task="classification",
        architecture="hashing_bag",
        labels=["a", "b"],
        dataset={"name": "toy", "fingerprint": "0123456789abcdef"},
        metrics={"macro_f1": 0.9},
    )
    write_info(folder, info)
    weights = np.random.default_rng(0).random(size_mb * 2**18, dtype=np.float32)  # 4 bytes each
    save_file({"w": weights}, str(folder / "model.safetensors"))
    return folder


def reopen_seconds(home: Path) -> float:
    """A new process opening the existing store (import + schema check), as every CLI call does."""
    code = "from miniml.registry.backend import get_client; get_client()"
    env = {**os.environ, "MINIML_HOME": str(home)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=20, help="model weights size")
    parser.add_argument("--polls", type=int, default=200, help="get_version calls to time")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="miniml-bench-"))
    os.environ["MINIML_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = ""
    t_import = timed(lambda: __import__("miniml.registry.store"))
    from miniml.registry import store
    from miniml.registry.backend import get_client
    from miniml.registry.tracking import RunTracker

    t_create = timed(get_client)
    t_reopen = reopen_seconds(home)
    tracker = RunTracker("bench")
    t_start = timed(tracker.start)
    steps = [
        timed(lambda s=s: tracker.log_metrics({"loss": 1.0 / (s + 1), "lr": 0.1}, step=s)) for s in range(50)
    ]
    tracker.end()
    folder = model_folder(home / "src", args.size_mb)
    t_register = timed(lambda: store.register_model("bench", folder))
    store.set_alias("bench", 1, "champion")
    t_first = timed(lambda: store.local_copy("models:/bench@champion"))
    t_cached = timed(lambda: store.local_copy("models:/bench@champion"))
    polls = [timed(lambda: store.get_version("bench", "champion")) for _ in range(args.polls)]
    print(machine())
    print(f"import miniml.registry.store        {t_import:8.2f} s")
    print(f"create embedded store (migrations)  {t_create:8.2f} s")
    print(f"new process: import + open store    {t_reopen:8.2f} s")
    print(f"RunTracker start (env capture)      {t_start * 1000:8.1f} ms")
    print(f"log_metrics, 2 metrics (median)     {statistics.median(steps) * 1000:8.1f} ms")
    print(f"register_model, {args.size_mb} MB folder       {t_register:8.2f} s")
    print(f"local_copy, first (download)        {t_first * 1000:8.1f} ms")
    print(f"local_copy, cached                  {t_cached * 1000:8.1f} ms")
    print(
        f"get_version by alias (median/p95)   {statistics.median(polls) * 1000:8.2f} / "
        f"{sorted(polls)[int(0.95 * len(polls))] * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()

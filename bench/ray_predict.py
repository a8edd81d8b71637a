"""Batch prediction rows/s: the local path vs Ray Data with an actor pool (``miniml predict --backend ray``).

    python bench/ray_predict.py MODEL --texts TEST.parquet                 # 100,000 rows, 2 actors
    python bench/ray_predict.py MODEL --texts TEST.parquet --rows 200000 --workers 4

MODEL is a model folder or ``models:/NAME/VERSION``; TEXTS a Parquet file with an ``input`` (or ``text``)
column, e.g. a prepared dataset's ``test.parquet``, repeated until ``--rows``. Both paths write the same JSONL
file (checked byte for byte). The Ray figure is end to end for one command on a cluster that is already up
(actors start, load the model, answer, the driver writes); the cluster's own start-up is printed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd


def machine() -> str:
    import ray
    import torch

    from miniml.registry.environment import cpu_model

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {load}, python "
        f"{platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}"
    )


def write_input(texts: Path, rows: int, target: Path) -> None:
    frame = pd.read_parquet(texts)
    column = "text" if "text" in frame.columns else "input"
    base = list(frame[column].astype(str))
    with target.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(json.dumps({"text": base[i % len(base)], "id": i}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model folder or models:/NAME/VERSION")
    parser.add_argument("--texts", type=Path, required=True, help="Parquet file with an input or text column")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (one CPU each)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    import ray

    from miniml.backends import get_backend
    from miniml.backends.ray.cluster import quiet_ray
    from miniml.compute import BackendConfig
    from miniml.evaluate.predict import predict_file

    with tempfile.TemporaryDirectory(prefix="miniml-bench-ray-") as tmp:
        work = Path(tmp)
        source = work / "in.jsonl"
        write_input(args.texts, args.rows, source)
        print(f"input: {args.rows} rows from {args.texts} ({source.stat().st_size / 1e6:.1f} MB JSONL)")

        start = time.perf_counter()
        local_rows = predict_file(args.model, source, work / "local.jsonl", batch_size=args.batch_size)
        local_s = time.perf_counter() - start
        print(f"local: {local_rows} rows in {local_s:.1f} s = {local_rows / local_s:,.0f} rows/s")

        quiet_ray()
        start = time.perf_counter()
        ray.init(num_cpus=args.workers + 1, object_store_memory=400 * 1024 * 1024, include_dashboard=False)
        print(f"ray cluster start-up: {time.perf_counter() - start:.1f} s (not counted below)")
        section = BackendConfig.model_validate({"type": "ray", "workers": args.workers})
        try:
            start = time.perf_counter()
            ray_rows = get_backend(section).predict(
                args.model, source, work / "ray.jsonl", batch_size=args.batch_size, top_k=None
            )
            ray_s = time.perf_counter() - start
        finally:
            ray.shutdown()
        print(
            f"ray ({args.workers} actors): {ray_rows} rows in {ray_s:.1f} s = {ray_rows / ray_s:,.0f} rows/s"
        )
        same = (work / "local.jsonl").read_bytes() == (work / "ray.jsonl").read_bytes()
        print(f"ratio ray/local: {local_s / ray_s:.2f}x · outputs identical: {same}")
    print(machine())
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

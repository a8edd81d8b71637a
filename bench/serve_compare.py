"""Serving throughput side by side: FastAPI + per-request pipeline vs LitServe vs ``miniml serve``.

Same MiniLM 5-class classifier, SST-5 test sentences as bodies, one text per request, closed-loop clients
(wrk if installed, else async httpx), one server at a time on this machine, then the model's offline
batched throughput (no HTTP) as the ceiling:

    (a) FastAPI + a transformers text-classification pipeline called per request (the seeds' approach)
    (b) LitServe with its own dynamic batching
    (c) miniml serve (dynamic batching in the server loop; cache off so every request runs the model)

    python bench/serve_compare.py --model models:/reviews@champion       # a trained reviews model
    python bench/serve_compare.py                                         # fine-tunes MiniLM briefly first
    python bench/serve_compare.py --model models:/reviews/1 --also models:/reviews/2 models:/reviews/3
        # + miniml rows for other versions of the same weights (`miniml optimize --onnx`, `--onnx --int8`)

Targets (issue 4): (c) >= 3x (a) with a lower p99, (c) ahead of (b), (c) >= 80% of offline throughput.
Needs the ``bench`` extra (``pip install -e .[bench]``: litserve).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import orjson
from serve_load import (
    REPO,
    LoadResult,
    Server,
    exit_on_sigterm,
    free_port,
    machine,
    measure,
    miniml_server,
    offline_throughput,
    print_table,
)


def sst5_sentences(split: str = "test") -> list[str]:
    """SST-5 sentences through the catalog (``examples/reviews/data.yaml``)."""
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    dataset = prepare(load_config(PrepareConfig, REPO / "examples" / "reviews" / "data.yaml"))
    return [str(t) for t in dataset.split(split)["input"].tolist()]


def finetune_minilm(steps: int) -> Path:
    """Fine-tune MiniLM on SST-5 for a few steps (enough for a real 5-class head to serve)."""
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare
    from miniml.tasks.classification import ClassificationConfig
    from miniml.train import fit

    dataset = prepare(load_config(PrepareConfig, REPO / "examples" / "reviews" / "data.yaml"))
    config = ClassificationConfig(
        model_name="reviews-bench",
        dataset=str(dataset.path),
        model={"kind": "pretrained", "name_or_path": "minilm", "max_length": 128},
        max_steps=steps,
        batch_size=16,
        learning_rate=5e-5,
        eval_steps=steps,
        early_stopping_patience=None,
    )
    return fit(config).model_folder


def model_folder(uri: str | None, steps: int) -> Path:
    if uri is None:
        print(f"no --model: fine-tuning MiniLM on SST-5 for {steps} steps", flush=True)
        return finetune_minilm(steps)
    from miniml.runtime import resolve

    return resolve(uri).path


def max_length_of(folder: Path) -> int:
    settings = json.loads((folder / "featurizer.json").read_text())
    return int(settings.get("max_length", 128))


def resolve_folder(uri: str) -> Path:
    from miniml.runtime import resolve

    return resolve(uri).path


def predict_path(folder: Path) -> str:
    return f"/v1/models/{json.loads((folder / 'miniml.json').read_text())['name']}/predict"


def miniml(folder: Path, name: str, args: argparse.Namespace) -> Server:
    sets = [
        f"batching.max_batch_size={args.max_batch_size}",
        f"batching.max_wait_ms={args.max_wait_ms}",
        "cache.backend=none",  # every request runs the model, like the others
    ]
    if args.micro_batch_size:
        sets.append(f"batching.micro_batch_size={args.micro_batch_size}")
    sets += [f"batching.workers={args.workers}"] if args.workers else []
    server = miniml_server([str(folder)], free_port(), sets)
    server.name = name
    return server


def offline_ceiling(folder: Path, texts: list[str], args: argparse.Namespace) -> float:
    """The model's best offline throughput: plain batches, or length-sorted chunks as the server runs them."""
    from miniml.modelfolder import read_info

    runtime = read_info(folder).runtime
    chunk = args.micro_batch_size or {"onnx": 4}.get(runtime, 16)
    plain = offline_throughput(folder, texts[:512], args.max_batch_size)
    chunked = offline_throughput(folder, texts[:512], args.max_batch_size, micro_batch=chunk)
    print(f"   offline {folder.name}: {plain:.1f} texts/s plain, {chunked:.1f} in sorted chunks of {chunk}")
    return max(plain, chunked)


def baseline(kind: str, folder: Path, args: argparse.Namespace) -> Server:
    port = free_port()
    cmd = [sys.executable, str(REPO / "bench" / "serve_baselines.py"), kind, str(folder), str(port)]
    cmd += ["--max-length", str(max_length_of(folder)), "--max-batch-size", str(args.max_batch_size)]
    cmd += ["--batch-timeout", str(args.max_wait_ms / 1000)]
    name = {"fastapi": "(a) FastAPI + pipeline per request", "litserve": "(b) LitServe, batched"}[kind]
    return Server(name, cmd, port, "/health")


def run_one(
    server: Server, path: str, body: object, texts: list[str], args: argparse.Namespace
) -> LoadResult:
    print(f"-- {server.name}: starting", flush=True)
    try:
        server.wait_ready()
        result = measure(
            server,
            path,
            body,
            texts,
            clients=args.clients,
            seconds=args.duration,
            tool=args.tool,  # type: ignore[arg-type]
        )
    finally:
        server.stop()
    print(f"   {result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model URI (models:/NAME@ALIAS, models:/NAME/VERSION, folder)")
    parser.add_argument(
        "--train-steps", type=int, default=60, help="fine-tuning steps when --model is absent"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--texts", type=int, default=2000, help="distinct SST-5 sentences cycled as bodies")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument(
        "--micro-batch-size",
        type=int,
        default=None,
        help="miniml: length-sorted chunks (default: by runtime)",
    )
    parser.add_argument("--workers", type=int, default=None, help="miniml: batching.workers (replicas)")
    parser.add_argument(
        "--also",
        nargs="*",
        default=[],
        help="more miniml rows: other versions of the same weights (e.g. `miniml optimize --onnx [--int8]`)",
    )
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument(
        "--only", nargs="*", choices=["fastapi", "litserve", "miniml"], help="subset of servers"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    exit_on_sigterm()

    folder = model_folder(args.model, args.train_steps)
    texts = sst5_sentences()[: args.texts]
    print(json.dumps({"machine": machine(), "model": str(folder), "texts": len(texts)}, indent=2), flush=True)
    only = set(args.only or ["fastapi", "litserve", "miniml"])

    text_body = lambda t: orjson.dumps({"text": t})  # noqa: E731
    miniml_body = lambda t: orjson.dumps({"inputs": [t]})  # noqa: E731
    results: list[LoadResult] = []
    if "fastapi" in only:
        results.append(run_one(baseline("fastapi", folder, args), "/predict", text_body, texts, args))
    if "litserve" in only:
        results.append(run_one(baseline("litserve", folder, args), "/predict", text_body, texts, args))
    offline: dict[str, float] = {}
    if "miniml" in only:
        servings = [("(c) miniml serve", folder)]
        servings += [(f"(c{i + 2}) miniml serve", resolve_folder(uri)) for i, uri in enumerate(args.also)]
        for label, served in servings:
            runtime = json.loads((served / "miniml.json").read_text()).get("runtime", "torch")
            name = f"{label}, {runtime}"
            results.append(
                run_one(miniml(served, name, args), predict_path(served), miniml_body, texts, args)
            )
            offline[name] = offline_ceiling(served, texts, args)
    print_table(results, args.clients)
    print(
        "\noffline ceiling (no HTTP, best of batches of {} and length-sorted chunks): {}".format(
            args.max_batch_size, ", ".join(f"{k}: {v:.1f} texts/s" for k, v in offline.items())
        )
    )
    base = {r.name[:3]: r for r in results}
    for c in results:
        if c.name not in offline:
            continue
        line = f"{c.name}: {c.rps / offline[c.name]:.0%} of its offline ceiling (target >= 80%)"
        if "(a)" in base:
            a = base["(a)"]
            line += f"; {c.rps / max(a.rps, 1e-9):.2f}x (a) (target >= 3x)"
            line += f", p99 {c.p99_ms:.0f} vs {a.p99_ms:.0f} ms"
        if "(b)" in base:
            line += f"; {c.rps / max(base['(b)'].rps, 1e-9):.2f}x (b) (target > 1x)"
        print(line)
    print(f"machine after the run: load average {os.getloadavg()[0]:.2f}")
    if args.out:
        report = {
            "machine": machine(),
            "offline_texts_per_s": offline,
            "also": args.also,
            "results": [r.row() for r in results],
            "clients": args.clients,
            "duration_s": args.duration,
            "at": time.strftime("%Y-%m-%d %H:%M"),
        }
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

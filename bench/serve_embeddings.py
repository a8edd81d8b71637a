"""``/v1/embeddings`` throughput: ``miniml serve`` vs a per-request FastAPI embedding server, in one run.

Same weights (the packaged all-MiniLM-L6-v2, mean pooling, unit vectors), WikiSQL questions as bodies, one
text per request, closed-loop clients (wrk if installed, else async httpx), one server at a time:

    (a) FastAPI + transformers, one forward pass per request: what a sentence-transformers app does
        (tokenizer → AutoModel → masked mean → normalise in a plain ``def`` handler, FastAPI's thread pool)
    (b) miniml serve: ``POST /v1/embeddings`` (OpenAI shape), dynamic batching; cache off, so every
        request runs the model

    python bench/serve_embeddings.py                       # 16 clients, 20 s each
    python bench/serve_embeddings.py --model models:/paraphrase/2 --clients 32
    python bench/serve_embeddings.py baseline FOLDER PORT  # (a) alone (what the run starts)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from serve_load import REPO, LoadResult, Server, exit_on_sigterm, free_port, machine, measure, miniml_server


class Body(BaseModel):
    """The baseline's request: OpenAI's ``input`` and ``model``."""

    input: str | list[str]
    model: str | None = None


def questions(limit: int) -> list[str]:
    """WikiSQL questions through the catalog (``examples/paraphrase/data.yaml``)."""
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    dataset = prepare(load_config(PrepareConfig, REPO / "examples" / "paraphrase" / "data.yaml"))
    return [str(t) for t in dataset.split("train")["input"].tolist()[:limit]]


def model_folder(uri: str | None, work: Path) -> Path:
    """The served model: ``uri``, or the packaged MiniLM imported as an embedding model (untrained)."""
    from miniml.runtime import resolve
    from miniml.tasks.registry import get_task
    from miniml.version import __version__

    if uri is not None:
        return resolve(uri).path
    folder = work / "minilm"
    settings = {"name_or_path": "minilm", "max_tokens": 256}
    get_task("embedding").import_model(settings, folder, {"name": "minilm", "miniml_version": __version__})
    return folder


def checkpoint_of(folder: Path) -> str:
    """The Hugging Face checkpoint the folder's encoder came from (its ``base_model``), for (a)."""
    from miniml.models.hf import require_model_folder

    base = json.loads((folder / "miniml.json").read_text())["base_model"]
    return require_model_folder(base)


def serve_baseline(checkpoint: str, port: int) -> None:
    """(a): one forward pass per request, sentence-transformers' pooling, in FastAPI under uvicorn."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embed(body: Body) -> dict[str, Any]:
        texts = [body.input] if isinstance(body.input, str) else body.input
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            vectors = torch.nn.functional.normalize(pooled, dim=-1)
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": body.model or "minilm"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def run_one(server: Server, body: Any, texts: list[str], args: argparse.Namespace) -> LoadResult:
    print(f"-- {server.name}: starting", flush=True)
    try:
        server.wait_ready()
        result = measure(
            server, "/v1/embeddings", body, texts, clients=args.clients, seconds=args.duration, tool=args.tool
        )
    finally:
        server.stop()
    print(f"   {result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms", flush=True)
    return result


def main() -> None:
    if sys.argv[1:2] == ["baseline"]:
        serve_baseline(checkpoint_of(Path(sys.argv[2])), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="an embedding model URI (default: the packaged MiniLM, imported)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--texts", type=int, default=2000, help="distinct questions cycled as bodies")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    exit_on_sigterm()

    with tempfile.TemporaryDirectory(prefix="bench-emb-") as work:
        folder = model_folder(args.model, Path(work))
        name = json.loads((folder / "miniml.json").read_text())["name"]
        texts = questions(args.texts)
        print(json.dumps({"machine": machine(), "model": str(folder), "texts": len(texts)}, indent=2))
        body = lambda t: orjson.dumps({"model": name, "input": t})  # noqa: E731
        port = free_port()
        cmd = [sys.executable, str(Path(__file__).resolve()), "baseline", str(folder), str(port)]
        results = [
            run_one(Server("(a) FastAPI, one forward per request", cmd, port, "/health"), body, texts, args)
        ]
        sets = [
            f"batching.max_batch_size={args.max_batch_size}",
            f"batching.max_wait_ms={args.max_wait_ms}",
            "cache.backend=none",
        ]
        server = miniml_server([str(folder)], free_port(), sets)
        server.name = "(b) miniml serve /v1/embeddings"
        results.append(run_one(server, body, texts, args))
    print(f"\n| server | req/s | p50 ms | p99 ms | errors | server CPU ms/req |  ({args.clients} clients)")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        cpu = r.server_cpu_ms_per_request
        print(f"| {r.name} | {r.rps:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {cpu} |")
    print(json.dumps({"load_average_after": machine()["load_average_1m"]}))
    if args.out:
        args.out.write_text(
            json.dumps({"machine": machine(), "results": [r.row() for r in results]}, indent=2)
        )


if __name__ == "__main__":
    main()

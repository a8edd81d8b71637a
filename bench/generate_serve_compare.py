"""Generation serving: FastAPI + a text2text generation per request vs ``miniml serve``'s batching loops.

Same seq2seq model folder, same prompts (the wikisql-mini test questions, cycled), greedy decoding,
closed-loop clients, one server at a time on this machine. Two workloads:

``--workload mixed`` (the default; issue 15): 16 clients, each request's ``max_new_tokens`` drawn from
8..128 (seeded; the same sequence for every server); the untrained model's end token is suppressed, so
every request generates exactly its ``max_new_tokens``. Requests to miniml are streamed (server-sent
events), which gives the time to first token; the per-request baseline cannot stream, so its first token
comes with its answer.

    (a) FastAPI calling text2text generation once per request (bench/generate_baseline.py)
    (b) miniml serve, static batching (``batching.continuous=false``): one ``model.generate`` per batch,
        a request that arrives while it runs waits for the whole batch
    (c) miniml serve, continuous batching: requests join the running batch at the next decoding step,
        finished rows leave at once

Targets (issue 15): (c) >= 1.5x (b)'s requests/s and <= 0.5x its p50 time to first token.

``--workload fixed`` (issue 5): 8 clients, every request the same ``max_new_tokens``, not streamed; (a)
against (c). Target: >= 3x (a)'s requests/s.

    python bench/generate_serve_compare.py                        # mixed, untrained MiniLM warm start
    python bench/generate_serve_compare.py --workload fixed --clients 8
    python bench/generate_serve_compare.py --model models:/text2sql@champion

The servers' answers are compared on a few prompts first (fixed: (a) and (c); mixed: (b) and (c)), so
all do the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
from serve_load import REPO, LoadResult, Server, free_port, machine, miniml_server, print_table

JSON_HEADERS = {"Content-Type": "application/json"}


def wikisql_prompts() -> list[str]:
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    dataset = prepare(load_config(PrepareConfig, REPO / "examples" / "text2sql" / "data.yaml"))
    return [str(t) for t in dataset.split("test")["input"].tolist()]


def untrained_folder(root: Path, endless: bool = False) -> Path:
    """A warm-started MiniLM encoder-decoder saved as a model folder (untrained: same work per token);
    ``endless``: its end token suppressed, so every answer runs to its ``max_new_tokens``."""
    from miniml.tasks.seq2seq import Seq2SeqSettings, Seq2SeqTask, load_for_training, make_format

    settings = Seq2SeqSettings.model_validate({"warm_start": {"encoder": "minilm"}, "max_input_tokens": 128})
    loaded = load_for_training(settings)
    if endless:
        loaded.model.generation_config.suppress_tokens = [loaded.tokenizer.sep_token_id]
    folder = root / "text2sql-untrained"
    Seq2SeqTask().write_folder(folder, loaded, make_format(settings), settings, {"name": "text2sql"})
    return folder


def model_folder(uri: str | None, root: Path, endless: bool = False) -> Path:
    if uri is None:
        print("no --model: an untrained warm-started MiniLM encoder-decoder", flush=True)
        return untrained_folder(root, endless)
    from miniml.runtime import resolve

    folder = resolve(uri).path
    if not (folder / "config.json").is_file():
        sys.exit(
            f"error: {folder} holds an adapter only; the baseline needs full weights (train with merge: true)"
        )
    return folder


def same_answers(a: Server, b: Server, name: str, prompts: list[str], max_new: int) -> None:
    """Both servers must give the same answers, or the comparison is meaningless."""
    for prompt in prompts[:3]:
        body = {"text": prompt, "max_new_tokens": max_new}
        left = httpx.post(f"{a.url}/generate", json=body, timeout=120).json()["generated_text"]
        body = {"inputs": [prompt], "max_new_tokens": max_new, "temperature": 0}
        right = httpx.post(f"{b.url}/v1/models/{name}/generate", json=body, timeout=120).json()
        if left != right["generations"][0]["text"]:
            raise SystemExit(
                f"error: answers differ for {prompt[:60]!r}: {left!r} vs {right['generations'][0]['text']!r}"
            )


async def closed_loop(
    url: str, bodies: list[bytes], clients: int, seconds: float
) -> tuple[list[float], int, float]:
    """``clients`` connections, each sending its next request when the last answer came (long timeouts:
    a generation can take seconds); returns latencies of answered requests, errors, elapsed seconds."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600) as client:

        async def one_client() -> None:
            nonlocal errors, counter
            while time.perf_counter() < stop_at:
                counter += 1
                start = time.perf_counter()
                r = await client.post(url, content=bodies[counter % len(bodies)], headers=JSON_HEADERS)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - began


def run(
    server: Server, path: str, body: Callable[[str], bytes], prompts: list[str], args: argparse.Namespace
) -> LoadResult:
    bodies = [body(p) for p in prompts]
    url = server.url + path
    asyncio.run(closed_loop(url, bodies, args.clients, args.warmup))
    latencies, errors, took = asyncio.run(closed_loop(url, bodies, args.clients, args.duration))
    ms = np.array(latencies or [0.0]) * 1000
    result = LoadResult(
        server.name,
        len(latencies),
        took,
        errors,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        "httpx",
    )
    print(
        f"   {server.name}: {result.rps:.2f} req/s, p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a seq2seq model folder")
    parser.add_argument("--workload", choices=["mixed", "fixed"], default="mixed")
    parser.add_argument("--clients", type=int, default=None, help="default: 16 (mixed), 8 (fixed)")
    parser.add_argument("--duration", type=float, default=None, help="seconds; default 60 (mixed), 30")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="fixed workload")
    parser.add_argument("--min-new", type=int, default=8, help="mixed workload: smallest max_new_tokens")
    parser.add_argument("--max-new", type=int, default=128, help="mixed workload: largest max_new_tokens")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring")
    parser.add_argument("--only", nargs="+", choices=["a", "b", "c"], help="mixed: run only these servers")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.workload == "mixed":
        args.clients, args.duration = args.clients or 16, args.duration or 60
        mixed(args)
        return
    args.clients, args.duration = args.clients or 8, args.duration or 30

    import tempfile

    root = Path(tempfile.mkdtemp(prefix="gen-bench-"))
    folder = model_folder(args.model, root)
    name = json.loads((folder / "miniml.json").read_text())["name"]
    max_input = json.loads((folder / "miniml.json").read_text())["preprocessing"]["max_input_tokens"]
    prompts = wikisql_prompts()
    print(
        json.dumps({"machine": machine(), "model": str(folder), "prompts": len(prompts)}, indent=2),
        flush=True,
    )

    cmd = [sys.executable, str(REPO / "bench" / "generate_baseline.py"), str(folder), str(free_port())]
    cmd += ["--max-new-tokens", str(args.max_new_tokens), "--max-input-tokens", str(max_input)]
    baseline = Server("(a) FastAPI + text2text per request", cmd, int(cmd[3]), "/health")
    sets = [
        f"batching.max_batch_size={args.max_batch_size}",
        f"batching.max_wait_ms={args.max_wait_ms}",
        "batching.request_timeout_s=300",
        "cache.backend=none",
        f"generation.max_new_tokens={max(args.max_new_tokens, 64)}",
    ]
    miniml = miniml_server([str(folder)], free_port(), sets)
    miniml.name = "(b) miniml serve, batched generation"
    results = []
    try:
        baseline.wait_ready()
        miniml.wait_ready()
        same_answers(baseline, miniml, name, prompts, args.max_new_tokens)
    finally:
        miniml.stop()
    try:  # one server at a time under load
        results.append(run(baseline, "/generate", lambda t: orjson.dumps({"text": t}), prompts, args))
    finally:
        baseline.stop()
    miniml = miniml_server([str(folder)], free_port(), sets)
    miniml.name = "(b) miniml serve, batched generation"
    try:
        miniml.wait_ready()
        max_new = args.max_new_tokens

        def body(t: str) -> bytes:
            return orjson.dumps({"inputs": [t], "max_new_tokens": max_new, "temperature": 0})

        results.append(run(miniml, f"/v1/models/{name}/generate", body, prompts, args))
    finally:
        miniml.stop()
    print_table(results, args.clients)
    ratio = results[1].rps / max(results[0].rps, 1e-9)
    print(f"\n(b) / (a) throughput: {ratio:.2f}x (target >= 3x) {'PASS' if ratio >= 3 else 'FAIL'}")
    print(f"machine after the run: load average {os.getloadavg()[0]:.2f}")
    if args.out:
        report = {
            "machine": machine(),
            "results": [r.row() for r in results],
            "ratio": ratio,
            "clients": args.clients,
        }
        args.out.write_text(json.dumps(report, indent=2))


def mixed(args: argparse.Namespace) -> None:
    """(a) per request, (b) static batching, (c) continuous batching, under mixed token caps."""
    import tempfile

    from generate_load import GenLoad, baseline_body, miniml_body, mixed_bodies, run

    root = Path(tempfile.mkdtemp(prefix="gen-bench-"))
    folder = model_folder(args.model, root, endless=True)
    info = json.loads((folder / "miniml.json").read_text())
    name, max_input = info["name"], info["preprocessing"]["max_input_tokens"]
    work = mixed_bodies(wikisql_prompts(), 400, args.min_new, args.max_new, seed=0)
    print(json.dumps({"machine": machine(), "model": str(folder), "requests_in_list": len(work)}), flush=True)
    sets = [
        f"batching.max_batch_size={args.max_batch_size}",
        f"batching.max_wait_ms={args.max_wait_ms}",
        "batching.request_timeout_s=900",
        f"batching.queue_size={max(4096, args.clients)}",
        "cache.backend=none",
        f"generation.max_new_tokens={args.max_new}",
    ]
    path = f"/v1/models/{name}/generate"
    results: list[GenLoad] = []
    answers: dict[str, list[str]] = {}
    wanted = set(args.only or ["a", "b", "c"])
    if "a" in wanted:
        cmd = [sys.executable, str(REPO / "bench" / "generate_baseline.py"), str(folder), str(free_port())]
        cmd += ["--max-new-tokens", str(args.max_new), "--max-input-tokens", str(max_input)]
        server = Server("(a) per request", cmd, int(cmd[3]), "/health")
        try:
            server.wait_ready()
            bodies = [baseline_body(p, n) for p, n in work]
            results.append(run(server.name, server.url + "/generate", bodies, args.clients, args.warmup,
                               args.duration, stream=False))  # fmt: skip
        finally:
            server.stop()
    for key, label, continuous in (
        ("b", "(b) static batching", "false"),
        ("c", "(c) continuous batching", "true"),
    ):
        if key not in wanted:
            continue
        server = miniml_server([str(folder)], free_port(), [*sets, f"batching.continuous={continuous}"])
        server.name = label
        try:
            server.wait_ready()
            probe = {"inputs": [p for p, _ in work[:3]], "max_new_tokens": 16, "temperature": 0}
            reply = httpx.post(server.url + path, json=probe, timeout=300).json()["generations"]
            answers[key] = [g["text"] for g in reply]
            if len(answers) == 2 and answers["b"] != answers["c"]:
                raise SystemExit(f"error: static and continuous answers differ: {answers}")
            bodies = [miniml_body(p, n, stream=True) for p, n in work]
            results.append(
                run(label, server.url + path, bodies, args.clients, args.warmup, args.duration, True)
            )
        finally:
            server.stop()
    caps = f"({args.clients} clients, max_new_tokens {args.min_new}..{args.max_new})"
    print(f"\n| server | req/s | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | errors |  {caps}")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in (x.row() for x in results):
        print(f"| {r['server']} | {r['req_s']:.2f} | {r['p50_ms']} | {r['p99_ms']} | {r['ttft_p50_ms']} | "
              f"{r['ttft_p99_ms']} | {r['errors']} |")  # fmt: skip
    by = {r.name[:3]: r for r in results}
    if "(b)" in by and "(c)" in by:
        b, c = by["(b)"], by["(c)"]
        speed = c.rps / max(b.rps, 1e-9)
        ttft = c.pct(c.ttft_ms, 50) / max(b.pct(b.ttft_ms, 50), 1e-9)
        print(f"\n(c) / (b) throughput: {speed:.2f}x (target >= 1.5x) {'PASS' if speed >= 1.5 else 'FAIL'}")
        verdict = "PASS" if ttft <= 0.5 else "FAIL"
        print(f"(c) / (b) p50 time to first token: {ttft:.2f}x (target <= 0.5x) {verdict}")
    print(f"machine after the run: load average {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(
            json.dumps({"machine": machine(), "results": [r.row() for r in results]}, indent=2)
        )


if __name__ == "__main__":
    main()

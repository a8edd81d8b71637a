"""``miniml serve`` with the nordic-langid model under 64 closed-loop clients: requests/s, p50, p99.

Bodies are single sentences of the nordic-langid test split (through the catalog). The server runs with
``examples/nordic-langid/serve.yaml``, cache off (every request runs the model) and no rate limit (one
client address would share one budget). Also prints the model's offline batched throughput.

    python bench/serve_langid.py                                  # models:/nordic-langid@champion
    python bench/serve_langid.py --model PATH_OR_URI --clients 64 --duration 20
    python bench/serve_langid.py --scrape-s 1 --set monitor.drift.enabled=false   # drift monitoring off

``--scrape-s N`` fetches ``/metrics`` every N seconds during the load, as Prometheus would (each scrape
computes the drift verdicts of the served versions), so monitoring's whole cost is in the figure.

Target (issue 4): >= 1,000 requests/s with p99 <= 50 ms at 64 clients.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

import httpx
import orjson
from serve_load import (
    REPO,
    exit_on_sigterm,
    free_port,
    machine,
    measure,
    miniml_server,
    offline_throughput,
    print_table,
)


def langid_sentences(split: str = "test") -> list[str]:
    from miniml.config import load_config
    from miniml.data.prepare import PrepareConfig, prepare

    dataset = prepare(load_config(PrepareConfig, REPO / "examples" / "nordic-langid" / "data.yaml"))
    return [str(t) for t in dataset.split(split)["input"].tolist()]


class Scraper:
    """GET /metrics every ``every_s`` seconds on a thread (Prometheus' role) until stopped."""

    def __init__(self, url: str, every_s: float) -> None:
        self.url, self.every_s = url, every_s
        self.count, self.drift = 0, "no verdict"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(self.every_s):
                text = http.get(self.url + "/metrics").text
                self.count += 1
                found = [line for line in text.splitlines() if line.startswith("miniml_drift_detected{")]
                self.drift = found[0] if found else "no verdict"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models:/nordic-langid@champion")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra serve setting k=v")
    parser.add_argument("--scrape-s", type=float, default=0, help="GET /metrics every N s during the load")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    exit_on_sigterm()

    from miniml.runtime import resolve

    source = resolve(args.model)
    texts = langid_sentences()[: args.texts]
    print(json.dumps({"machine": machine(), "model": args.model, "texts": len(texts)}, indent=2), flush=True)
    sets = ["cache.backend=none", "ratelimit.requests=null", "ratelimit.chars=null", *args.sets]
    config = REPO / "examples" / "nordic-langid" / "serve.yaml"
    server = miniml_server([args.model], free_port(), sets, config=config)
    try:
        server.wait_ready()
        scraper = Scraper(server.url, args.scrape_s) if args.scrape_s > 0 else None
        result = measure(
            server,
            f"/v1/models/{source.name}/predict",
            lambda t: orjson.dumps({"inputs": [t]}),
            texts,
            clients=args.clients,
            seconds=args.duration,
            tool=args.tool,
        )
        if scraper is not None:
            scraper.stop()
            print(f"scrapes of /metrics during the run: {scraper.count}, drift: {scraper.drift}", flush=True)
    finally:
        server.stop()
    offline = offline_throughput(source.path, texts[:4096], 64)
    print_table([result], args.clients)
    print(f"\nserver CPU per request: {result.server_cpu_ms_per_request} ms")
    print(f"offline batched: {offline:.1f} texts/s (batch 64)")
    ok = result.rps >= 1000 and result.p99_ms <= 50
    print(f"target >= 1000 req/s and p99 <= 50 ms: {'met' if ok else 'NOT met'}")
    print(f"machine after the run: load average {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(
            json.dumps({"machine": machine(), "result": result.row(), "offline": offline}, indent=2)
        )


if __name__ == "__main__":
    main()

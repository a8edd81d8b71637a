"""``miniml serve`` pushed to 4x its capacity with a new connection per request: what a new client sees.

Every request opens its own TCP connection (``Connection: close``), so the wait in the kernel's accept
queue counts: the latency is measured from ``connect()`` to the last byte of the answer, which is what a
new client waits and what the server's own histogram cannot see. Closed loop, from an asyncio client in
this process (uvloop when installed), on the same cores as the server.

1. Capacity: 4 s at 8, 16, 32, 64 and 128 clients; capacity is the smallest client count whose
   throughput (200 answers/s) reaches 90% of the best one.
2. Overload: 4x that many clients for ``--duration`` seconds. Printed: the status mix (HTTP statuses,
   ``timeout`` after ``--timeout`` s, ``conn_error`` for refused/reset connections), p50 / p99 / max of
   the fresh-connection latency (all answers, and 200s alone), the server's peak RSS and CPU, and the
   listen socket's accept queue (sampled every 50 ms from ``/proc/net/tcp``: works for any server).

    python bench/serve_overload.py                                    # models:/nordic-langid@champion
    python bench/serve_overload.py --model FOLDER --set server.loop=asyncio
    python bench/serve_overload.py --clients 512                      # skip the capacity ramp

Bodies are nordic-langid test sentences (through the catalog), one per request; the cache and rate
limits are off so every request reaches the model, as in ``bench/serve_langid.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from serve_langid import langid_sentences
from serve_load import REPO, Server, exit_on_sigterm, free_port, machine, miniml_server

RAMP = (8, 16, 32, 64, 128)


@dataclass
class Outcome:
    """What one closed-loop run saw."""

    clients: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[str, float]] = field(default_factory=list)

    @property
    def ok_per_s(self) -> float:
        return self.statuses["200"] / self.seconds

    def percentiles(self, only: str | None = None) -> dict[str, float]:
        ms = np.array([s for status, s in self.latencies if only is None or status == only]) * 1000
        if not len(ms):
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        return {
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1),
        }


async def fresh_request(port: int, request: bytes, timeout: float) -> tuple[str, float]:
    """Connect, send, read to the end; (status or failure, seconds from connect to the last byte)."""
    start = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            data = await reader.read()
        status = data[9:12].decode("ascii", "replace") if data.startswith(b"HTTP/1.") else "conn_error"
    except TimeoutError:
        status = "timeout"
    except OSError:
        status = "conn_error"
    finally:
        if writer is not None:
            writer.close()
    return status, time.perf_counter() - start


async def closed_loop(
    port: int, requests: Sequence[bytes], clients: int, seconds: float, timeout: float
) -> Outcome:
    outcome = Outcome(clients, seconds)
    stop_at = time.perf_counter() + seconds
    counter = 0

    async def client() -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            status, took = await fresh_request(port, requests[counter % len(requests)], timeout)
            outcome.statuses[status] += 1
            outcome.latencies.append((status, took))

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    outcome.seconds = time.perf_counter() - began
    return outcome


class Sampler:
    """Server RSS / CPU and the accept queue of its port, every 50 ms, while a run goes on."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.rss_kb: list[int] = []
        self.queue: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                self.rss_kb.append(int(line.split()[1]))
        depth = listen_queue(self.port)
        if depth is not None:
            self.queue.append(depth)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.05)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def listen_queue(port: int) -> int | None:
    """Connections waiting in the accept queue of the LISTEN socket on ``port`` (Linux ``/proc/net/tcp``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return int(parts[4].split(":")[1], 16)  # rx_queue of a listener: its accept queue
    return None


def http_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def bench(server: Server, requests: Sequence[bytes], args: argparse.Namespace) -> dict[str, object]:
    port = server.port
    await closed_loop(port, requests, 16, 2, args.timeout)  # warm up
    ramp = []
    if args.clients is None:
        for clients in RAMP:
            outcome = await closed_loop(port, requests, clients, 4, args.timeout)
            ramp.append({"clients": clients, "ok_per_s": round(outcome.ok_per_s, 1), **outcome.percentiles()})
            print(json.dumps(ramp[-1]), flush=True)
        best = max(r["ok_per_s"] for r in ramp)
        capacity = next(r["clients"] for r in ramp if r["ok_per_s"] >= 0.9 * best)
        clients = 4 * int(capacity)
    else:
        capacity, clients = None, args.clients
    sampler = Sampler(server.proc.pid, port)
    cpu_before = sampler.cpu_s()
    with sampler:
        outcome = await closed_loop(port, requests, clients, args.duration, args.timeout)
    await asyncio.sleep(1)
    sampler.sample()
    total = sum(outcome.statuses.values())
    return {
        "ramp": ramp,
        "capacity_clients": capacity,
        "overload_clients": clients,
        "seconds": round(outcome.seconds, 1),
        "requests": total,
        "status_mix": {k: round(v / total, 4) for k, v in sorted(outcome.statuses.items())},
        "status_counts": dict(sorted(outcome.statuses.items())),
        "ok_per_s": round(outcome.ok_per_s, 1),
        "answered_per_s": round(total / outcome.seconds, 1),
        "latency_all": outcome.percentiles(),
        "latency_200": outcome.percentiles("200"),
        "server_rss_mb": {
            "start": round(sampler.rss_kb[0] / 1024, 1),
            "peak": round(max(sampler.rss_kb) / 1024, 1),
            "after": round(sampler.rss_kb[-1] / 1024, 1),
        },
        "server_cpu_s": round(sampler.cpu_s() - cpu_before, 1),
        "accept_queue": {
            "max": max(sampler.queue, default=0),
            "mean": round(float(np.mean(sampler.queue)), 1) if sampler.queue else 0.0,
            "p99": round(float(np.percentile(sampler.queue, 99)), 1) if sampler.queue else 0.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models:/nordic-langid@champion")
    parser.add_argument("--clients", type=int, help="overload clients (default: 4x the measured capacity)")
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request (s)")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra serve setting k=v")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    exit_on_sigterm()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    from miniml.runtime import resolve

    source = resolve(args.model)
    path = f"/v1/models/{source.name}/predict"
    requests = [http_request(path, orjson.dumps({"inputs": [t]})) for t in langid_sentences()[: args.texts]]
    print(json.dumps({"machine": machine(), "model": args.model, "sets": args.sets}, indent=2), flush=True)
    sets = ["cache.backend=none", "ratelimit.requests=null", "ratelimit.chars=null", *args.sets]
    config = REPO / "examples" / "nordic-langid" / "serve.yaml"
    server = miniml_server([args.model], free_port(), sets, config=config)
    try:
        server.wait_ready()
        result = asyncio.run(bench(server, requests, args))
    finally:
        server.stop()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "sets": args.sets, **result}, indent=2))


if __name__ == "__main__":
    main()

"""``miniml serve`` pushed to 4x its capacity with a new connection per request: what a new client sees.

Every request opens its own TCP connection (``Connection: close``), so the wait in the kernel's accept
queue counts: it is part of every latency below, and the server's own histogram cannot see it. Closed loop,
on the same cores as the server, from ``wrk`` (C, two threads; its clock starts when a request is written
on the just-connected socket, so a request waiting to be accepted is timed) or, with ``--tool python`` or
without wrk, an asyncio client in this process timing ``connect()`` to the last byte (a Python client
caps out near 1,000 connections/s on a shared 2-core VM, below the server: use wrk for overload).

1. Capacity: 4 s at 8, 16, 32, 64 and 128 clients; capacity is the smallest client count whose
   throughput (200 answers/s) reaches 90% of the best one.
2. Overload: 4x that many clients for ``--duration`` seconds. Printed: the status mix (HTTP statuses,
   ``timeout`` after ``--timeout`` s, ``conn_error`` for refused/reset connections), p50 / p99 / max of
   the fresh-connection latency (all answers, and 200s alone), the server's peak RSS and CPU, and the
   listen socket's accept queue (sampled every 50 ms from ``/proc/net/tcp``: works for any server).
3. With ``--huge-headers 4``, before the overload: four clients each send an unfinished header of
   ``--huge-header-mb`` (100) MB;
   printed: how much each got to send, what it was answered, and the server's RSS before and after.

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
import shutil
import tempfile
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
    fixed: dict[str, float] | None = None  # percentiles from wrk (no samples)

    @property
    def ok_per_s(self) -> float:
        return self.statuses["200"] / self.seconds

    def percentiles(self, only: str | None = None) -> dict[str, float]:
        if self.fixed is not None:
            return self.fixed if only is None else {}
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


WRK_SCRIPT = """
local bodies = {}
for line in io.lines(%(bodies_file)s) do bodies[#bodies + 1] = line end
local i = 0
local threads = {}
statuses = {}
wrk.method = "POST"
wrk.path = %(path)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Connection"] = "close"
setup = function(thread) table.insert(threads, thread) end
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i %% #bodies) + 1])
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do merged[status] = (merged[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(merged) do parts[#parts + 1] = string.format('"%%d": %%d', status, n) end
  local e = summary.errors
  io.write(string.format('WRK_JSON {"duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "statuses": {%%s}}\\n',
    summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")))
end
"""


async def wrk_loop(
    port: int, path: str, bodies: Sequence[bytes], clients: int, seconds: float, timeout: float
) -> Outcome:
    """The same closed loop from wrk (fresh connection per request); latencies as percentiles only."""
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as lines:
        lines.write(b"\n".join(bodies) + b"\n")
    script = WRK_SCRIPT % {"bodies_file": json.dumps(lines.name), "path": json.dumps(path)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    cmd = ["wrk", "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", f"{int(timeout)}s", "-s", fh.name]
    proc = await asyncio.create_subprocess_exec(
        *cmd, f"http://127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    os.unlink(fh.name)
    os.unlink(lines.name)
    line = next(x for x in out.decode().splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    outcome = Outcome(clients, data["duration_us"] / 1e6)
    outcome.statuses.update({str(k): int(v) for k, v in data["statuses"].items()})
    for kind in ("connect", "read", "write"):
        if data[kind]:
            outcome.statuses[f"conn_error_{kind}"] += data[kind]
    if data["timeout"]:
        outcome.statuses["timeout"] += data["timeout"]
    outcome.fixed = {  # wrk reports percentiles, not samples
        "p50_ms": round(data["p50_us"] / 1000, 1),
        "p99_ms": round(data["p99_us"] / 1000, 1),
        "max_ms": round(data["max_us"] / 1000, 1),
    }
    return outcome


async def huge_headers(port: int, connections: int, megabytes: int) -> dict[str, object]:
    """``connections`` clients each sending one unfinished header of up to ``megabytes`` MB, in parallel."""

    async def one() -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, chunk = 0, b"x" * 65536
        try:
            while sent < megabytes << 20:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 5)
                sent += len(chunk)
            answer = await asyncio.wait_for(reader.read(12), 5)
        except (OSError, TimeoutError, RuntimeError):  # RuntimeError: uvloop, once the server closed
            try:
                answer = await asyncio.wait_for(reader.read(12), 5)
            except TimeoutError:
                answer = b"NONE"  # still held open, never answered
            except OSError:
                answer = b"RST"
        writer.close()
        if answer in (b"RST", b"NONE"):
            return sent, "reset" if answer == b"RST" else "no answer"
        return sent, answer[9:12].decode("ascii", "replace") or "held"

    done = await asyncio.gather(*(one() for _ in range(connections)))
    return {"sent_mb": [round(s / 2**20, 1) for s, _ in done], "answers": [a for _, a in done]}


def http_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def bench(
    server: Server, path: str, bodies: Sequence[bytes], args: argparse.Namespace
) -> dict[str, object]:
    port = server.port
    requests = [http_request(path, b) for b in bodies]

    async def run(clients: int, seconds: float) -> Outcome:
        if args.tool == "wrk":
            return await wrk_loop(port, path, bodies, clients, seconds, args.timeout)
        return await closed_loop(port, requests, clients, seconds, args.timeout)

    await run(16, 2)  # warm up
    ramp = []
    if args.clients is None:
        for clients in RAMP:
            outcome = await run(clients, 4)
            ramp.append({"clients": clients, "ok_per_s": round(outcome.ok_per_s, 1), **outcome.percentiles()})
            print(json.dumps(ramp[-1]), flush=True)
        best = max(r["ok_per_s"] for r in ramp)
        capacity = next(r["clients"] for r in ramp if r["ok_per_s"] >= 0.9 * best)
        clients = 4 * int(capacity)
    else:
        capacity, clients = None, args.clients
    sampler = Sampler(server.proc.pid, port)
    attack = None
    if args.huge_headers:
        sampler.sample()
        before_mb = sampler.rss_kb[-1] / 1024
        attack = await huge_headers(port, args.huge_headers, args.huge_header_mb)
        sampler.sample()
        attack.update(rss_before_mb=round(before_mb, 1), rss_after_mb=round(sampler.rss_kb[-1] / 1024, 1))
        print(json.dumps({"huge_headers": attack}), flush=True)
        sampler.rss_kb.clear()
    cpu_before = sampler.cpu_s()
    with sampler:
        outcome = await run(clients, args.duration)
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
        "tool": args.tool,
        "huge_headers": attack,
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
    parser.add_argument(
        "--tool", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    parser.add_argument(
        "--huge-headers",
        type=int,
        default=0,
        help="first, this many clients send one unfinished --huge-header-mb header each",
    )
    parser.add_argument("--huge-header-mb", type=int, default=100, help="size of each unfinished header")
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
    bodies = [orjson.dumps({"inputs": [t]}) for t in langid_sentences()[: args.texts]]
    print(json.dumps({"machine": machine(), "model": args.model, "sets": args.sets}, indent=2), flush=True)
    sets = ["cache.backend=none", "ratelimit.requests=null", "ratelimit.chars=null", *args.sets]
    config = REPO / "examples" / "nordic-langid" / "serve.yaml"
    server = miniml_server([args.model], free_port(), sets, config=config)
    try:
        server.wait_ready()
        result = asyncio.run(bench(server, path, bodies, args))
    finally:
        server.stop()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "sets": args.sets, **result}, indent=2))


if __name__ == "__main__":
    main()

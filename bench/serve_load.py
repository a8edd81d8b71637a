"""Shared pieces of the serving benchmarks: servers in subprocesses, a load generator, the machine.

Load comes from ``wrk`` when installed (C, so the client takes little of the CPU the server needs; bodies
cycle through the given texts via a Lua script), else from an async httpx client. Both are closed-loop:
N connections, each sending its next request when the previous answer arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass
class LoadResult:
    """Closed-loop load figures of one server."""

    name: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    tool: str
    server_cpu_ms_per_request: float | None = None  # CPU time of the server process (less noisy than req/s)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def row(self) -> dict[str, object]:
        return {**asdict(self), "rps": round(self.rps, 1)}


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop the servers this run started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, object]:
    """CPU model, usable cores, torch threads, load average: printed with every figure."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


class Server:
    """A server command in a subprocess; ``ready`` polls ``health_url``; output goes to a temp log file."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, health_path: str, env: dict | None = None):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.health_path = health_path
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self._out = self.log.open("wb")
        full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
        # A session of its own: servers that fork workers (LitServe) are stopped as a whole process group.
        self.proc = subprocess.Popen(
            list(cmd), stdout=self._out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )

    def wait_ready(self, timeout: float = 600) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log}")
            try:
                if httpx.get(self.url + self.health_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; log: {self.log}")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after 30 s; no worker outlives the run."""
        group = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.proc.wait()
        self._out.close()


WRK_SCRIPT = """
local bodies = {}
for line in io.lines(%(bodies_file)s) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"errors": %%d}\\n', summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def lua_string(text: str) -> str:
    """An ASCII string (paths, header names) as a Lua literal; JSON's escapes for it are Lua's too."""
    return json.dumps(text, ensure_ascii=True)


def run_wrk(
    name: str, url: str, bodies: Sequence[bytes], clients: int, seconds: float, headers: dict[str, str]
) -> LoadResult:
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as lines:
        lines.write(b"\n".join(bodies) + b"\n")  # compact JSON: one body per line
    script = WRK_SCRIPT % {
        "bodies_file": lua_string(lines.name),
        "headers": "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    threads = max(1, min(clients, 2))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{int(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        fh.name,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(fh.name)
    os.unlink(lines.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    return LoadResult(
        name,
        data["requests"],
        data["duration_us"] / 1e6,
        data["errors"],
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        "wrk",
    )


async def _httpx_load(
    name: str, url: str, bodies: Sequence[bytes], clients: int, seconds: float, headers: dict[str, str]
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    counter = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=10, headers=headers) as client:

        async def one_client() -> None:
            nonlocal errors, counter
            while time.perf_counter() < stop_at:
                counter += 1
                body = bodies[counter % len(bodies)]
                start = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers={"Content-Type": "application/json"})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        took = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return LoadResult(
        name,
        len(latencies),
        took,
        errors,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
        "httpx",
    )


def load(
    name: str,
    url: str,
    bodies: Sequence[bytes],
    *,
    clients: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    tool: str = "auto",
) -> LoadResult:
    """Closed-loop load with ``clients`` connections for ``seconds``; wrk when available."""
    if tool == "wrk" or (tool == "auto" and shutil.which("wrk")):
        return run_wrk(name, url, bodies, clients, seconds, headers or {})
    return asyncio.run(_httpx_load(name, url, bodies, clients, seconds, headers or {}))


def measure(
    server: Server,
    path: str,
    make_body: Callable[[str], bytes],
    texts: Sequence[str],
    *,
    clients: int,
    seconds: float,
    warmup_s: float = 3,
    tool: str = "auto",
) -> LoadResult:
    """Warm ``server`` up, then load it; checks one answer first so a broken server cannot score."""
    bodies = [make_body(t) for t in texts]
    check = httpx.post(server.url + path, content=bodies[0], headers={"Content-Type": "application/json"})
    if check.status_code != 200:
        raise RuntimeError(f"{server.name} answered {check.status_code}: {check.text[:300]}")
    load(server.name, server.url + path, bodies, clients=clients, seconds=warmup_s, tool=tool)
    cpu = process_cpu_s(server.proc.pid)
    result = load(server.name, server.url + path, bodies, clients=clients, seconds=seconds, tool=tool)
    used = process_cpu_s(server.proc.pid) - cpu
    if result.requests:
        result.server_cpu_ms_per_request = round(1000 * used / result.requests, 4)
    return result


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and the threads it has (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def offline_throughput(
    folder: Path, texts: Sequence[str], batch_size: int, rounds: int = 2, micro_batch: int | None = None
) -> float:
    """Texts/s of the model itself (no HTTP), in batches (optionally length-sorted chunks); best of rounds."""
    from miniml.tasks import load_predictor

    predictor = load_predictor(folder, threads=len(os.sched_getaffinity(0)))
    predictor.predict_proba(list(texts[:batch_size]))  # warm up
    chunk = micro_batch or batch_size
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            batch = (
                sorted(texts[i : i + batch_size], key=len) if micro_batch else list(texts[i : i + batch_size])
            )
            for j in range(0, len(batch), chunk):
                predictor.predict_proba(batch[j : j + chunk])
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def print_table(results: Sequence[LoadResult], clients: int) -> None:
    print(f"\n| server | req/s | p50 ms | p99 ms | errors | load tool |  ({clients} clients)")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r.name} | {r.rps:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {r.tool} |")


def miniml_server(uris: Sequence[str], port: int, sets: Sequence[str], config: Path | None = None) -> Server:
    """``miniml serve`` with ``--set`` overrides (and an optional config file)."""
    cmd = [sys.executable, "-m", "miniml", "serve", *uris, "--port", str(port)]
    if config is not None:
        cmd += ["--config", str(config)]
    for item in sets:
        cmd += ["--set", item]
    return Server("miniml serve", cmd, port, "/readyz")

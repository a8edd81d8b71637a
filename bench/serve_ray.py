"""``miniml serve`` locally vs ``miniml serve --backend ray`` with 1 and 2 replicas, under the same load as
``bench/serve_langid.py`` (single nordic-langid sentences, N closed-loop clients, cache off, no rate limit),
in one run: requests/s, p50, p99, errors, and where the CPU goes (ms of CPU per request in the server
process, or in Ray Serve's proxy and replica processes).

The Ray runs join one local Ray cluster that this script starts (``ray.cluster_utils.Cluster``, one node
with this machine's cores, every port a free one) and stops; a replica reserves ``cores / replicas`` CPUs.
Every server runs ``examples/nordic-langid/serve.yaml`` (one torch thread per model: a tiny model gains
nothing from more, and the event loop gets a core). Run it alone:
``flock /tmp/miniml-bench.lock python bench/serve_ray.py``.

    python bench/serve_ray.py                                     # models:/nordic-langid@champion
    python bench/serve_ray.py --model PATH_OR_URI --clients 64 --duration 20 --replicas 1,2

Target (issue 14): Ray with one replica >= 80% of the local server's requests/s, p99 <= 2x.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
from serve_langid import langid_sentences
from serve_load import REPO, LoadResult, Server, exit_on_sigterm, free_port, machine, measure, print_table

SETS = ["cache.backend=none", "ratelimit.requests=null", "ratelimit.chars=null"]
CONFIG = REPO / "examples" / "nordic-langid" / "serve.yaml"


@contextlib.contextmanager
def ray_cluster(cpus: int) -> Iterator[tuple[str, int]]:
    """A one-node local Ray cluster in processes of its own; yields its GCS address and raylet's pid."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": cpus,
            "include_dashboard": False,
            "object_store_memory": 200 * 1024 * 1024,
            "dashboard_agent_listen_port": free_port(),
            "metrics_export_port": free_port(),
            "runtime_env_agent_port": free_port(),
        },
    )
    try:
        (raylet,) = cluster.head_node.all_processes["raylet"]
        yield str(cluster.address), int(raylet.process.pid)
    finally:
        cluster.shutdown()


def serve_cmd(model: str, port: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "miniml", "serve", model, "--config", str(CONFIG), "--port", str(port)]
    for item in [*SETS, *extra]:
        cmd += ["--set", item]
    return cmd


def ray_processes(raylet: int) -> dict[str, list[psutil.Process]]:
    """Ray Serve's proxy and replica processes of this cluster (the raylet's children, by process title)."""
    found: dict[str, list[psutil.Process]] = {"proxy": [], "replicas": []}
    for proc in psutil.Process(raylet).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.cmdline())
            if line.startswith("ray::ProxyActor"):
                found["proxy"].append(proc)
            elif line.startswith("ray::ServeReplica:"):
                found["replicas"].append(proc)
    return found


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def run_one(name: str, cmd: list[str], port: int, model_name: str, texts: list[str], args: argparse.Namespace,
            raylet: int | None) -> tuple[LoadResult, dict[str, float]]:  # fmt: skip
    server = Server(name, cmd, port, "/readyz")
    try:
        server.wait_ready()
        if (
            raylet is not None
        ):  # /readyz answers once one replica is up; the CLI prints this line when all are
            deadline = time.monotonic() + 300
            while "Ctrl-C stops it" not in server.log.read_text(errors="replace"):
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise RuntimeError(f"{name} did not finish deploying; log: {server.log}")
                time.sleep(0.5)
        procs = ray_processes(raylet) if raylet is not None else {"server": [psutil.Process(server.proc.pid)]}
        before = {k: cpu_seconds(v) for k, v in procs.items()}
        result = measure(
            server,
            f"/v1/models/{model_name}/predict",
            lambda t: orjson.dumps({"inputs": [t]}),
            texts,
            clients=args.clients,
            seconds=args.duration,
            tool=args.tool,
        )
        # measure() counted the warm-up too; per request over both is close enough to compare processes
        spent = {k: cpu_seconds(v) - before[k] for k, v in procs.items()}
        served = max(1, result.requests + int(result.rps * 3))
        cpu_ms = {k: round(1000 * s / served, 3) for k, s in spent.items()}
        result.server_cpu_ms_per_request = round(sum(cpu_ms.values()), 3)
        return result, cpu_ms
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models:/nordic-langid@champion")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--replicas", default="1,2", help="Ray replica counts to measure, comma-separated")
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    exit_on_sigterm()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from miniml.runtime import resolve

    source = resolve(args.model)
    texts = langid_sentences()[: args.texts]
    cores = len(os.sched_getaffinity(0))
    counts = [int(n) for n in args.replicas.split(",") if n.strip()]
    print(json.dumps({"machine": machine(), "model": args.model, "texts": len(texts), "clients": args.clients,
                      "duration_s": args.duration, "replicas": counts}, indent=2), flush=True)  # fmt: skip

    rows: list[tuple[LoadResult, dict[str, float]]] = []
    port = free_port()
    rows.append(run_one("local", serve_cmd(args.model, port, []), port, source.name, texts, args, None))
    with ray_cluster(cores) as (address, raylet):
        port = free_port()  # Serve's proxies keep the port of the first deploy while Serve runs
        for n in counts:
            extra = [
                "backend.type=ray",
                f"backend.address={address}",
                f"backend.replicas={n}",
                f"backend.cpus_per_replica={cores / n:g}",
                f"backend.app_name=bench{n}",
            ]
            cmd = serve_cmd(args.model, port, extra)
            rows.append(run_one(f"ray, {n} replica(s)", cmd, port, source.name, texts, args, raylet))

    results = [r for r, _ in rows]
    print_table(results, args.clients)
    print("\nCPU ms per request (user + system):")
    for r, cpu in rows:
        print(f"  {r.name}: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    local, one = results[0], results[1] if len(results) > 1 else None
    if one is not None and local.rps:
        share, p99 = one.rps / local.rps, one.p99_ms / max(local.p99_ms, 1e-9)
        ok = share >= 0.8 and p99 <= 2
        print(f"\nray 1 replica: {share:.0%} of local req/s, p99 {p99:.1f}x local; target >= 80% and <= 2x: "
              f"{'met' if ok else 'NOT met'}")  # fmt: skip
    print(f"machine after the run: load average {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "rows": [
            {**r.row(), "cpu_ms": cpu} for r, cpu in rows]}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

"""Closed-loop load for generation servers with time to first token (server-sent events when streamed).

Each of N clients sends its next request when the previous answer is complete. A request's body comes
from a fixed, seeded list (prompt and ``max_new_tokens``), taken in turn, so every server sees the same
sequence. For streamed requests the time to first token is when the first ``data:`` event carrying text
arrives; for a server that cannot stream it is the whole latency.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import numpy as np
import orjson


@dataclass
class GenLoad:
    """Figures of one server under the mixed workload."""

    name: str
    requests: int
    seconds: float
    errors: int
    latency_ms: list[float]
    ttft_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    def row(self) -> dict[str, object]:
        return {
            "server": self.name,
            "requests": self.requests,
            "errors": self.errors,
            "req_s": round(self.rps, 3),
            "p50_ms": round(self.pct(self.latency_ms, 50)),
            "p99_ms": round(self.pct(self.latency_ms, 99)),
            "ttft_p50_ms": round(self.pct(self.ttft_ms, 50)),
            "ttft_p99_ms": round(self.pct(self.ttft_ms, 99)),
        }


async def _one(client: httpx.AsyncClient, url: str, body: bytes, stream: bool) -> tuple[float, float] | None:
    """(latency, time to first token) in seconds, or None on an error."""
    start = time.perf_counter()
    first: float | None = None
    headers = {"Content-Type": "application/json"}
    if not stream:
        r = await client.post(url, content=body, headers=headers)
        took = time.perf_counter() - start
        return (took, took) if r.status_code == 200 else None
    async with client.stream("POST", url, content=body, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return None
        async for line in r.aiter_lines():
            if (
                first is None
                and line.startswith("data: {")
                and '"text":"' in line
                and '"text":""' not in line
            ):
                first = time.perf_counter() - start
            if line.startswith("event: error"):
                return None
    took = time.perf_counter() - start
    return took, first if first is not None else took


async def closed_loop(
    name: str, url: str, bodies: list[bytes], clients: int, seconds: float, stream: bool
) -> GenLoad:
    counter = 0
    latency: list[float] = []
    ttft: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=900) as client:

        async def one_client() -> None:
            nonlocal counter, errors
            while time.perf_counter() < stop_at:
                body = bodies[counter % len(bodies)]
                counter += 1
                got = await _one(client, url, body, stream)
                if got is None:
                    errors += 1
                else:
                    latency.append(got[0] * 1000)
                    ttft.append(got[1] * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        took = time.perf_counter() - began
    return GenLoad(name, len(latency), took, errors, latency, ttft)


def run(
    name: str, url: str, bodies: list[bytes], clients: int, warmup: float, seconds: float, stream: bool
) -> GenLoad:
    asyncio.run(closed_loop(name, url, bodies, clients, warmup, stream))
    result = asyncio.run(closed_loop(name, url, bodies, clients, seconds, stream))
    r = result.row()
    print(
        f"   {name}: {r['req_s']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
        f"TTFT p50 {r['ttft_p50_ms']} ms, p99 {r['ttft_p99_ms']} ms, {r['errors']} errors",
        flush=True,
    )
    return result


def mixed_bodies(prompts: list[str], count: int, low: int, high: int, seed: int) -> list[tuple[str, int]]:
    """``count`` (prompt, max_new_tokens) pairs: prompts in turn, token caps uniform in [low, high]."""
    rng = np.random.default_rng(seed)
    caps = rng.integers(low, high + 1, size=count)
    return [(prompts[i % len(prompts)], int(caps[i])) for i in range(count)]


def miniml_body(prompt: str, max_new: int, stream: bool) -> bytes:
    return orjson.dumps({"inputs": [prompt], "max_new_tokens": max_new, "temperature": 0, "stream": stream})


def baseline_body(prompt: str, max_new: int) -> bytes:
    return orjson.dumps({"text": prompt, "max_new_tokens": max_new})

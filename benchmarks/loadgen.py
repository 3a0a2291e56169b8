"""HTTP load generator: closed-loop concurrency and open-loop Poisson arrivals, bounded in count and time.

Closed loop: `concurrency` workers each send the next request when the last one answered.
Open loop: requests are due at Poisson arrival times; latency counts from the *intended* send time, so a
server (or a generator) that falls behind shows it as latency instead of hiding it in a slower send rate.
The generator measures its own CPU time: it shares the machine with the server.
"""
from __future__ import annotations

import asyncio
import json
import random
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Sample:
    intended: float  # when the request was due (monotonic s)
    latency: float  # seconds from `intended` to the full response
    status: int  # HTTP status, or 0 for a client-side error (connection refused, timeout)
    query: str
    timings: dict | None = None


@dataclass
class RunResult:
    mode: str
    level: float  # concurrency, or arrival rate in requests/s
    wall_s: float
    samples: list[Sample] = field(default_factory=list)
    loadgen_cpu_s: float = 0.0

    def summary(self) -> dict:
        ok = [s for s in self.samples if s.status == 200]
        lat = sorted(s.latency for s in ok)
        stages: dict[str, list[float]] = {}
        for s in ok:
            for stage, t in (s.timings or {}).items():
                if t:
                    stages.setdefault(stage, []).append(t["duration_ms"])
        return {
            "mode": self.mode,
            "level": self.level,
            "requests": len(self.samples),
            "ok": len(ok),
            "qps": round(len(ok) / self.wall_s, 2) if self.wall_s else 0.0,
            "p50_ms": _ms(percentile(lat, 50)),
            "p95_ms": _ms(percentile(lat, 95)),
            "p99_ms": _ms(percentile(lat, 99)),
            "status": dict(Counter(str(s.status) for s in self.samples)),
            "stage_p50_ms": {k: round(percentile(sorted(v), 50), 1) for k, v in stages.items()},
            "loadgen_cpu_s": round(self.loadgen_cpu_s, 2),
            "loadgen_cpu_share": round(self.loadgen_cpu_s / self.wall_s, 3) if self.wall_s else 0.0,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Payload = Callable[[int], dict]


async def _send(session: aiohttp.ClientSession, url: str, body: dict, intended: float, keep_timings: bool) -> Sample:
    try:
        async with session.post(url, json=body) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return Sample(intended, time.monotonic() - intended, 0, body.get("query", ""))
    latency = time.monotonic() - intended
    timings = None
    if keep_timings and status == 200:
        timings = json.loads(raw).get("timings")
    return Sample(intended, latency, status, body.get("query", ""), timings)


async def closed_loop(url: str, payload: Payload, concurrency: int, requests: int, timeout_s: float = 60, max_wall_s: float = 120, keep_timings: bool = True) -> RunResult:
    """`concurrency` workers share `requests` requests; stops early after `max_wall_s`."""
    counter = iter(range(requests))
    samples: list[Sample] = []
    deadline = time.monotonic() + max_wall_s
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def worker() -> None:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                now = time.monotonic()
                samples.append(await _send(session, url, payload(n), now, keep_timings))

        cpu0, t0 = _cpu(), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    return RunResult("closed", concurrency, wall, samples, cpu)


async def open_loop(url: str, payload: Payload, rate: float, duration_s: float, timeout_s: float = 30, seed: int = 7, keep_timings: bool = True) -> RunResult:
    """Poisson arrivals at `rate`/s for `duration_s`; every due request is sent, however late the server is."""
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            break
        arrivals.append(t)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        cpu0, t0 = _cpu(), time.monotonic()

        async def one(n: int, at: float) -> Sample:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            return await _send(session, url, payload(n), t0 + at, keep_timings)

        samples = await asyncio.gather(*(one(n, at) for n, at in enumerate(arrivals)))
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    return RunResult("open", rate, wall, list(samples), cpu)

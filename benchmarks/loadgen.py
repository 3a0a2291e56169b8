"""HTTP load generator: closed-loop concurrency and open-loop Poisson arrivals, bounded in count and time.

Closed loop: `concurrency` workers each send the next request when the last one answered.
Open loop: requests are due at Poisson arrival times; latency counts from the *intended* send time, so a
server (or a generator) that falls behind shows it as latency instead of hiding it in a slower send rate.
The generator measures its own CPU time: it shares the machine with the server.
"""

from __future__ import annotations

import asyncio
import json
import os
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
    degraded: list[str] | None = None  # stages a 200 listed in `degraded` (kept with the timings)

    @property
    def outcome(self) -> str:
        """ok: a 200 with every stage; degraded: a 200 without some stage; failed: anything else."""
        if self.status != 200:
            return "failed"
        return "degraded" if self.degraded else "ok"


@dataclass
class RunResult:
    mode: str
    level: float  # concurrency, or arrival rate in requests/s
    wall_s: float
    samples: list[Sample] = field(default_factory=list)
    loadgen_cpu_s: float = 0.0
    extra_ok: float = 0.0  # the share of uncounted warm-ups that ran inside the measured window (throughput only)

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
            "qps": round((len(ok) + self.extra_ok) / self.wall_s, 2) if self.wall_s else 0.0,
            "p50_ms": _ms(percentile(lat, 50)),
            "p95_ms": _ms(percentile(lat, 95)),
            "p99_ms": _ms(percentile(lat, 99)),
            "status": dict(Counter(str(s.status) for s in self.samples)),
            "outcomes": outcomes(self.samples),
            "stage_p50_ms": {k: round(percentile(sorted(v), 50), 1) for k, v in stages.items()},
            "loadgen_cpu_s": round(self.loadgen_cpu_s, 2),
            "loadgen_cpu_share": round(self.loadgen_cpu_s / self.wall_s, 3) if self.wall_s else 0.0,
        }


def outcomes(samples: list[Sample]) -> dict[str, int]:
    """ok / degraded / failed counts (a 200 with `degraded` is not a full success)."""
    counts = Counter(s.outcome for s in samples)
    return {k: counts.get(k, 0) for k in ("ok", "degraded", "failed")}


def process_cpu(match: tuple[str, ...] = ("ray", "haproxy")) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of this user's processes whose command line contains one of `match` (Linux /proc):
    pid → (command line, user+system seconds). Two snapshots give each server process's share of a run."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(bytes(1), b" ").decode(errors="replace").strip()
            if not any(m in cmd for m in match):
                continue
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(entry)] = (cmd, (int(fields[11]) + int(fields[12])) / tick)
        except OSError:
            continue
    return out


def cpu_ms_per_request(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], requests: int
) -> dict[str, float]:
    """CPU milliseconds per request by process name (Ray's process titles: `ray::ServeReplica:app:Ingress`, ...)."""
    per: dict[str, float] = {}
    for pid, (cmd, cpu) in after.items():
        if pid in before:
            name = cmd.split()[0].rsplit("/", 1)[-1] if not cmd.startswith("ray::") else cmd.split()[0]
            per[name] = per.get(name, 0.0) + (cpu - before[pid][1]) * 1000 / max(requests, 1)
    return {k: round(v, 2) for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.01}


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
    except (TimeoutError, aiohttp.ClientError):
        return Sample(intended, time.monotonic() - intended, 0, body.get("query", ""))
    latency = time.monotonic() - intended
    timings = degraded = None
    if keep_timings and status == 200:
        answer = json.loads(raw)
        timings = answer.get("timings")
        degraded = [d["stage"] for d in answer.get("degraded") or []]
    return Sample(intended, latency, status, body.get("query", ""), timings, degraded)


async def closed_loop(
    url: str,
    payload: Payload,
    concurrency: int,
    requests: int,
    timeout_s: float = 60,
    max_wall_s: float = 120,
    keep_timings: bool = True,
    ramp_s: float = 0.0,
) -> RunResult:
    """`concurrency` workers share `requests` counted requests; stops early after `max_wall_s`.

    With `ramp_s`, worker i starts at i·ramp_s/concurrency and requests sent before the ramp ends are not
    counted (nor in the wall time): a synchronized start of many clients is a burst, not the steady state."""
    counter = iter(range(requests))
    warmup = iter(range(-1, -1_000_000, -1))
    samples: list[Sample] = []
    late_warmups: list[float] = []  # the share of each warm-up that ran inside the measured window
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        start = time.monotonic()
        measured_from = start + ramp_s
        deadline = measured_from + max_wall_s

        async def worker(i: int) -> None:
            await asyncio.sleep(i * ramp_s / concurrency)
            while time.monotonic() < measured_from:
                sample = await _send(session, url, payload(next(warmup)), time.monotonic(), False)
                inside = time.monotonic() - measured_from
                if sample.status == 200 and inside > 0:
                    # Only the part of it that ran inside the window is that window's work: counting the
                    # whole request would add up to one request per worker that mostly ran in the ramp.
                    late_warmups.append(min(1.0, inside / sample.latency) if sample.latency else 1.0)
            for n in counter:
                if time.monotonic() > deadline:
                    return
                now = time.monotonic()
                samples.append(await _send(session, url, payload(n), now, keep_timings))

        cpu0 = _cpu()
        tasks = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
        await asyncio.sleep(max(0.0, measured_from - time.monotonic()))
        cpu0, t0 = (
            (_cpu(), measured_from) if ramp_s else (cpu0, start)
        )  # the window's own start, however late this wakes
        await asyncio.gather(*tasks)
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    return RunResult("closed", concurrency, wall, samples, cpu, extra_ok=sum(late_warmups))


async def open_loop(
    url: str,
    payload: Payload,
    rate: float,
    duration_s: float,
    timeout_s: float = 30,
    seed: int = 7,
    keep_timings: bool = True,
) -> RunResult:
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

"""Closed-loop /v1/answer clients for the cluster run, and the summary of what they saw."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp

from benchmarks.harness import QUERIES

COLLECTION = "cluster"


def payload(n: int) -> dict:
    return {"collection": COLLECTION, "query": QUERIES[n % len(QUERIES)], "top_k": 5, "mode": "hybrid+graph"}


class Load:
    """Closed-loop /v1/answer clients; every response is recorded with its send time and outcome."""

    def __init__(self, base: str, concurrency: int, timeout_s: float = 60):
        self.base, self.concurrency, self.timeout_s = base, concurrency, timeout_s
        self.records: list[dict] = []
        self._stop = asyncio.Event()

    async def _one(self, session: aiohttp.ClientSession, n: int) -> dict:
        sent = time.monotonic()
        try:
            async with session.post(f"{self.base}/v1/answer", json=payload(n)) as resp:
                body = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            return {"sent": sent, "done": time.monotonic(), "status": 0, "error": type(exc).__name__, "degraded": []}
        degraded = (
            [f"{d['stage']}: {d['error'][:100]}" for d in json.loads(body).get("degraded", [])] if status == 200 else []
        )
        error = None if status == 200 else body[:200].decode(errors="replace")
        return {"sent": sent, "done": time.monotonic(), "status": status, "error": error, "degraded": degraded}

    async def run(self) -> None:
        counter = iter(range(10**9))
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=self.concurrency)
        ) as session:

            async def client() -> None:
                while not self._stop.is_set():
                    self.records.append(await self._one(session, next(counter)))

            await asyncio.gather(*(client() for _ in range(self.concurrency)))

    def stop(self) -> None:
        self._stop.set()


def summarize(records: list[dict]) -> dict:
    failed = [r for r in records if r["status"] != 200]
    degraded = [r for r in records if r["status"] == 200 and r["degraded"]]
    return {
        "requests": len(records),
        "failed": len(failed),
        "degraded": len(degraded),
        "failed_pct": round(100 * len(failed) / max(len(records), 1), 2),
        "degraded_pct": round(100 * len(degraded) / max(len(records), 1), 2),
        "statuses": dict(Counter(str(r["status"]) for r in records)),
        "failure_reasons": dict(Counter((r["error"] or "")[:120] for r in failed)),
        "degraded_stages": dict(Counter(s.split(":")[0] for r in degraded for s in r["degraded"])),
        "degraded_reasons": dict(Counter(s for r in degraded for s in r["degraded"]).most_common(5)),
    }
